"""One fast JSON codec for the whole server (orjson), so hot paths never touch ``json``.

Integers are read exactly. orjson reads an integer beyond 64 bits as a float (``10**30``
becomes ``1e+30``), which would put a float where an amount was written and break an Adyen
item's signature over its ``value``; so a document in which orjson found a float (rare in
what the gateway reads: none of its fields is one) is read again by the standard library,
whose integers are exact. A number beyond a double's range (~1e308) orjson refuses as not
JSON, and so does the gateway.

What ``dumps`` writes is narrower: integers from :data:`INT_MIN` to :data:`INT_MAX`
(orjson's int64 and uint64). So input the gateway stores or answers is refused past them
where it is read (request bodies: ``http/request_input.py``; routing rules:
``processors/routing.py``), not at the write, where it would be a 500.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["INT_MAX", "INT_MIN", "JSONDecodeError", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError  # (a json.JSONDecodeError, so a ValueError)
INT_MIN = -(2**63)  # the integers dumps writes
INT_MAX = 2**64 - 1


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    value = orjson.loads(data)  # refuses what is not RFC 8259 JSON (NaN, bad UTF-8, …) first
    if not _holds_float(value):
        return value
    try:
        return json.loads(data)
    # orjson takes 1,024 levels of nesting, the standard library only as deep as Python's stack;
    # ValueError as well, so that nothing it refuses escapes as anything but JSONDecodeError.
    except (ValueError, RecursionError) as exc:
        text = data if isinstance(data, str) else data.decode("utf-8", "replace")
        raise JSONDecodeError(f"not JSON the gateway reads ({type(exc).__name__})", text, 0) from None


def _holds_float(value: Any) -> bool:
    # Iterative: orjson's nesting (1,024 levels) is deeper than Python's recursion limit.
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False
