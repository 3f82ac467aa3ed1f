"""uvicorn's HTTP/1.1 protocol, with a response's writes leaving in one ``send``.

uvicorn writes a response's status line and headers to the socket when the app sends
``http.response.start``, and the body when it sends ``http.response.body``: two ``send``
system calls for every response, and on loopback or a LAN usually two TCP segments that
wake the client twice. The profile of ``paygate bench`` put ~4.6 % of the gateway's CPU in
those writes (docs/performance.md, fifth pass).

:class:`CoalescingTransport` holds the writes made during one turn of the event loop and
sends them together at the end of that turn (``loop.call_soon``). A complete response
(Starlette's ``Response`` sends start and body without yielding to the loop in between)
becomes one ``send``; a streaming response (SSE) still leaves chunk by chunk, each at the
end of the turn that produced it, so nothing waits longer than the current turn. Close
sends what is held first, so ``Connection: close`` responses are never cut short.

Everything else a transport does (flow control, ``get_extra_info``, ``is_closing``) is the
real transport's, unchanged: when the socket's buffer fills, the real transport pauses the
protocol as before, just from the flush instead of from inside the app's ``send``.
"""
from __future__ import annotations

import asyncio
from typing import Any

from paygate_server.headerguard import GuardedHttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport proxy whose writes in one event-loop turn leave in one ``write``."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._flush)
        else:
            self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # pause_reading/resume_reading, get_extra_info, set_protocol, abort, …
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(GuardedHttpToolsProtocol):
    """uvicorn's httptools protocol, with the request-head limits of
    :mod:`paygate_server.headerguard`, on a :class:`CoalescingTransport` (``uvicorn.run(http=…)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
