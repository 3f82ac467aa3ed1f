"""One fast JSON codec for the whole server (orjson), so hot paths never touch ``json``."""
from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "loads", "JSONDecodeError"]

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
