"""A lean HTTP/1.1 keep-alive client for the load generator (asyncio protocol, no library).

General-purpose async clients spend more CPU per request than the gateway's cheapest
endpoints (the simulator's author measured httpx with many connections topping out near
130 req/s on this machine), which would make the load generator the bottleneck. This
client writes each request as one ``bytes`` and parses the answer's head itself: status,
``Content-Length`` or chunked body, ``Connection: close``. One request at a time per
connection (no pipelining).
"""
from __future__ import annotations

import asyncio

__all__ = ["ConnectionPool", "HttpConnection", "HttpError", "Response"]


class HttpError(Exception):
    """A transport failure (refused, reset, closed early, malformed answer, timeout)."""


class Response:
    __slots__ = ("body", "close", "status")

    def __init__(self, status: int, body: bytes, close: bool) -> None:
        self.status = status
        self.body = body
        self.close = close


def _parse_chunked(data: bytearray | bytes, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``: (body, end offset), or None if incomplete."""
    out = bytearray()
    pos = start
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(data[pos:line_end]).split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", pos - 2)
            if trailer_end < 0:
                return None
            return bytes(out), trailer_end + 4
        if len(data) < pos + size + 2:
            return None
        out += data[pos:pos + size]
        pos += size + 2


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            try:
                response = self._parse()
            except Exception as exc:  # noqa: BLE001 - a malformed answer fails this request
                self.waiter.set_exception(HttpError(f"malformed response: {exc!r}"))
                return
            if response is not None:
                self.waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {type(self.lost).__name__}"))

    def _parse(self) -> Response | None:
        buf = self.buffer
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(buf[:head_end]).lower()
        status = int(head[9:12])
        body_start = head_end + 4
        close = b"\r\nconnection: close" in head
        cl = head.find(b"\r\ncontent-length:")
        if cl >= 0:
            line_end = head.find(b"\r\n", cl + 2)
            length = int(head[cl + 17:line_end if line_end >= 0 else len(head)])
            if len(buf) < body_start + length:
                return None
            body = bytes(buf[body_start:body_start + length])
            del buf[:body_start + length]
        elif b"\r\ntransfer-encoding: chunked" in head:
            parsed = _parse_chunked(buf, body_start)
            if parsed is None:
                return None
            body, end = parsed
            del buf[:end]
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
            del buf[:body_start]
        else:  # no length: the body runs to the end of the connection
            return None
        return Response(status, body, close)


class HttpConnection:
    """One keep-alive connection; ``request`` sends one request and reads its answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._protocol: _Protocol | None = None
        self._host_header = f"Host: {host}:{port}\r\n".encode("ascii")

    @property
    def connected(self) -> bool:
        p = self._protocol
        return p is not None and p.lost is None and p.transport is not None and not p.transport.is_closing()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        except OSError as exc:
            raise HttpError(f"connect failed: {type(exc).__name__}") from None
        self._protocol = protocol

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float = 30.0) -> Response:
        """``headers``: ready-made ``Name: value\\r\\n`` lines."""
        if not self.connected:
            self.close()
            await self.connect()
        protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        if protocol.buffer:  # stray bytes from an earlier answer: the connection is unusable
            self.close()
            await self.connect()
            protocol = self._protocol
            assert protocol is not None and protocol.transport is not None
        transport = protocol.transport
        assert transport is not None
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        protocol.waiter = waiter
        transport.write(b"".join((
            f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_header,
            b"Content-Length: %d\r\n" % len(body), headers, b"\r\n", body,
        )))
        try:
            response = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self.close()
            raise HttpError("timeout") from None
        except HttpError:
            self.close()
            raise
        finally:
            protocol.waiter = None
        if response.close:
            self.close()
        return response


class ConnectionPool:
    """Keep-alive connections to one host, for the open-loop mode: a request takes an idle
    connection or opens one, up to ``limit`` (then waits for one to be returned)."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self._idle: list[HttpConnection] = []
        self._open = 0
        self._available = asyncio.Condition()

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float = 30.0) -> Response:
        conn = await self._acquire()
        try:
            return await conn.request(method, target, headers, body, timeout)
        finally:
            await self._release(conn)

    async def _acquire(self) -> HttpConnection:
        async with self._available:
            while not self._idle and self._open >= self.limit:
                await self._available.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        return HttpConnection(self.host, self.port)

    async def _release(self, conn: HttpConnection) -> None:
        async with self._available:
            self._idle.append(conn)
            self._available.notify()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    @property
    def open_connections(self) -> int:
        return self._open

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ConnectionPool({self.host}:{self.port}, open={self._open}, idle={len(self._idle)})"
