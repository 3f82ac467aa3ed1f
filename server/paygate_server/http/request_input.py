"""What every request body and query string must be before any endpoint looks at it.

One place for every route (``/api/v1`` and ``/checkout/v1``), at parse time:

* the body is a JSON object nested at most :data:`MAX_JSON_DEPTH` levels deep. orjson
  parses up to 1024 levels but serialises only 254, so a deeper ``productDetails`` used to
  parse, pass validation and then fail with a 500 when it was stored or answered;
* every integer fits in 64 bits (what orjson writes: -2**63 .. 2**64-1). The codec reads a
  longer one exactly (jsoncodec), and then cannot write it back: a ``productDetails``
  holding one passed validation and failed with a 500 when it was stored;
* no string anywhere — keys and values, at any depth, and every query parameter name and
  value — holds a NUL character. PostgreSQL cannot store one in ``text``/``jsonb`` (the
  statement fails: a 500), SQLite stores it and C-string consumers truncate it; refused
  alike on both databases with ``400 parameter_invalid``.

The checks are exact, but the full walk runs only when a cheap look at the raw bytes says
it could matter: a NUL can only arrive as the escape ``\\u0000`` (JSON forbids a raw control
character in a string, and orjson refuses one), a body with at most
:data:`MAX_JSON_DEPTH` opening brackets cannot nest deeper than that, and an integer past
64 bits has at least 19 digits.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from paygate_server import jsoncodec
from paygate_server.errors import ApiError

__all__ = ["MAX_JSON_DEPTH", "echoable_name", "parse_json_object", "refuse_nul"]

# Levels of objects/arrays, the body itself being level 1. productDetails ("any JSON
# object", SPEC §4) gets 31 below it: far more than any catalogue needs (docs/api.md).
MAX_JSON_DEPTH: Final = 32

_NUL = "\x00"
_NUL_ESCAPE: Final = b"\\u0000"
# An integer outside what jsoncodec writes has at least 19 digits. A run of 19, found as a run of "9"s once every digit reads "9" and every other byte
# a space: bytes.translate and a substring search take ~1 µs on a 1 KB body, where the regex
# [0-9]{19} took ~9 µs (it tries each position).
_DIGITS_AS_NINES: Final = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS: Final = b"9" * 19
# A name a client sent is echoed (as ``param``, in a message) only when it cannot carry data
# worth hiding (no digits: never part of a card number) nor break a one-line message (no
# control characters) — every API field name has this shape.
_ECHOABLE_NAME = re.compile(r"[A-Za-z_]{1,60}")


def echoable_name(name: str) -> str | None:
    """``name`` if it is safe to echo in an error, else None."""
    return name if _ECHOABLE_NAME.fullmatch(name) else None


def _nul_error(name: str | None) -> ApiError:
    where = name or "a parameter"
    return ApiError("parameter_invalid", f"{where} must not contain NUL (\\u0000) characters", param=name)


def _check_structure(document: dict[str, Any]) -> None:
    """Depth, integer range and NUL over the whole document, iteratively (no recursion
    limit to hit)."""
    stack: list[tuple[Any, int, str | None]] = []
    for key, child in document.items():
        if _NUL in key:
            raise _nul_error(None)
        stack.append((child, 2, echoable_name(key)))
    while stack:
        item, depth, top = stack.pop()
        if isinstance(item, str):
            if _NUL in item:
                raise _nul_error(top)
        elif type(item) is int and not jsoncodec.INT_MIN <= item <= jsoncodec.INT_MAX:
            raise ApiError("parameter_invalid", "JSON integers must fit in 64 bits", param=top)
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ApiError("parameter_invalid",
                               f"JSON may nest at most {MAX_JSON_DEPTH} levels deep", param=top)
            if isinstance(item, dict):
                for key, child in item.items():
                    if _NUL in key:
                        raise _nul_error(top)
                    stack.append((child, depth + 1, top))
            else:
                stack.extend((child, depth + 1, top) for child in item)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object: ``400 invalid_json`` if it is not one,
    ``400 parameter_invalid`` if it nests too deep, holds an integer past 64 bits or a NUL
    character."""
    if not body.strip():
        raise ApiError("invalid_json", "the request body must be a JSON object")
    try:
        value = jsoncodec.loads(body)
    except jsoncodec.JSONDecodeError:
        raise ApiError("invalid_json", "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_json", "the request body must be a JSON object")
    if (_NUL_ESCAPE in body or body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH
            or _LONG_DIGITS in body.translate(_DIGITS_AS_NINES)):
        _check_structure(value)
    return value


def refuse_nul(items: Iterable[tuple[str, str]]) -> None:
    """Refuse a NUL in any name or value of decoded query (or path) parameters."""
    for name, value in items:
        if _NUL in name:
            raise _nul_error(None)
        if _NUL in value:
            raise _nul_error(echoable_name(name))
