"""A request cut off mid-body, at the ASGI level: what a server's body reader sees when the
client leaves (or headerguard's body timeout closes the connection)."""
from __future__ import annotations

from typing import Any

from starlette.requests import Request


def cut_off_request(path: str) -> Request:
    """A POST whose client sent its head and one byte of a 1,000-byte body, then left."""
    messages = iter([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    return Request({"type": "http", "method": "POST", "path": path, "headers": [(b"content-length", b"1000")]},
                   receive)
