"""``loads``: ``json.loads`` for what peers send, where every malformed document is a
``ValueError``.

``json.loads`` raises ``RecursionError`` (not a ``ValueError``) for a document nested
deeper than the interpreter's recursion limit (``[[[[…``); a hostile or broken peer could
send one in a few kilobytes. Callers catch ``ValueError`` only.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes | bytearray) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("the JSON document is nested too deeply") from None
