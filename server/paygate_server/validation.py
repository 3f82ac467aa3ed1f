"""Strict request validation helpers: exact types, known fields only, clear messages.

Unknown fields are refused (``parameter_invalid``) so a client can never set what the
server owns (``status``, ``amountRefunded``, …) by mass assignment.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from paygate_server import jsoncodec
from paygate_server.errors import ApiError
from paygate_server.http.request_input import echoable_name

__all__ = ["reject_unknown", "require", "optional_str", "require_str", "require_int", "parse_int_param",
           "require_id", "json_object_param"]

_ID = re.compile(r"[a-z]{2,4}_[a-z0-9]{10,64}")


def reject_unknown(body: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed_set = set(allowed)
    for key in body:
        if key not in allowed_set:
            # The name is the client's text: echoed only if it is a plain word (a key can
            # be a card number, a newline, a megabyte).
            name = echoable_name(key)
            raise ApiError("parameter_invalid", f"unknown parameter: {name}" if name else "unknown parameter",
                           param=name)


def require(body: dict[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise ApiError("parameter_missing", f"{name} is required", param=name)
    return body[name]


def require_str(body: dict[str, Any], name: str, *, max_len: int, min_len: int = 1) -> str:
    value = require(body, name)
    if not isinstance(value, str) or not min_len <= len(value) <= max_len:
        raise ApiError("parameter_invalid", f"{name} must be a string of {min_len} to {max_len} characters", param=name)
    return value


def optional_str(body: dict[str, Any], name: str, *, max_len: int, min_len: int = 1) -> str | None:
    if body.get(name) is None:
        return None
    return require_str(body, name, max_len=max_len, min_len=min_len)


def require_int(body: dict[str, Any], name: str, *, minimum: int, maximum: int) -> int:
    value = require(body, name)
    # bool is an int in Python; 19.99 and "1999" are not amounts.
    if type(value) is not int or not minimum <= value <= maximum:
        raise ApiError("parameter_invalid", f"{name} must be an integer from {minimum} to {maximum}", param=name)
    return value


def require_id(value: Any, name: str, prefix: str) -> str:
    if value is None or value == "":
        raise ApiError("parameter_missing", f"{name} is required", param=name)
    if not isinstance(value, str) or not value.startswith(prefix + "_") or not _ID.fullmatch(value):
        # A malformed id cannot name anything the merchant owns.
        raise ApiError("resource_missing", f"no such object: {name}", param=name)
    return value


def parse_int_param(raw: str | None, name: str, *, default: int, minimum: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    # ASCII digits only: str.isdigit() also takes "²" or "٣", which int() then refuses
    # (or reads), and a bounded length keeps int() off Python's 4300-digit limit.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18) or not minimum <= int(raw) <= maximum:
        raise ApiError("parameter_invalid", f"{name} must be an integer from {minimum} to {maximum}", param=name)
    return int(raw)


def json_object_param(body: dict[str, Any], name: str, *, max_bytes: int) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError("parameter_invalid", f"{name} must be a JSON object", param=name)
    if len(jsoncodec.dumps(value)) > max_bytes:
        raise ApiError("parameter_invalid", f"{name} must be at most {max_bytes} bytes of JSON", param=name)
    return value
