"""A lean HTTP/1.1 keep-alive client (asyncio protocol, no library), shared by the load
generator (``paygate bench``) and the simulator connector's processor calls.

Why not httpx: general-purpose async clients spend more CPU per request than the gateway's
cheapest endpoints. The simulator's author measured httpx with many connections topping out
near 130 req/s on this machine, which would make the load generator the bottleneck, and
profiling the gateway under load put httpx/httpcore/anyio at ~10 % of its CPU, nearly all
of it in the processor call (~1.1 ms of CPU per call against ~0.1 ms with this client).

What it does: it writes each request as one ``bytes`` and parses the answer's head itself:
status, ``Content-Length``, chunked or close-delimited body, ``Connection: close``. One
request at a time per connection (no pipelining); optional TLS. What it does not do:
redirects, proxies, cookies, compression, ``Expect: 100-continue``, HTTP/2.

Failures are exceptions, never statuses: :class:`HttpError` for anything that stopped an
answer from arriving, as one of its subclasses where the cause is known —
:class:`HttpTimeout`, :class:`ConnectFailed`, :class:`ConnectionLost` (with
:class:`ReusedConnectionClosed` when a reused keep-alive connection ended before the first
byte of its answer) and :class:`MalformedResponse` — so that callers can tell causes apart
by class alone. A request that fails or is cancelled mid-way always closes its connection,
so a late answer can never be read as the answer to the next request on it. Exception
texts never contain request bytes.
"""
from __future__ import annotations

import asyncio
import collections
import socket
import ssl as _ssl

__all__ = [
    "ConnectFailed",
    "ConnectionLost",
    "ConnectionPool",
    "HttpConnection",
    "HttpError",
    "HttpTimeout",
    "MalformedResponse",
    "Response",
    "ReusedConnectionClosed",
]


class HttpError(Exception):
    """A transport failure (refused, reset, closed early, malformed answer, timeout)."""


class HttpTimeout(HttpError):
    """No connection, no free pooled connection, or no complete answer in the time allowed."""


class ConnectFailed(HttpError):
    """The connection could not be opened (refused, unreachable, DNS, TLS handshake):
    nothing was sent."""


class ConnectionLost(HttpError):
    """The connection ended (closed or reset) before the answer was complete."""


class MalformedResponse(HttpError):
    """The bytes received are not a well-formed HTTP/1.x answer."""


class ReusedConnectionClosed(ConnectionLost):
    """A keep-alive connection that had already served a request ended before the first
    byte of the next answer: most likely the server closed it while it was idle, just as
    the request was written. Whether the request reached the server is unknown."""


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
                response = self._parse(at_eof=False)
            except Exception as exc:  # noqa: BLE001 - a malformed answer fails this request
                error = MalformedResponse(f"malformed response: {type(exc).__name__}")
                self.waiter.set_exception(error)
                return
            if response is not None:
                self.waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed by the server")
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:  # a body without a length ends with the connection
            response = self._parse(at_eof=True)
        except Exception:  # noqa: BLE001
            response = None
        if response is not None:
            waiter.set_result(response)
        else:
            waiter.set_exception(ConnectionLost(f"connection lost: {type(self.lost).__name__}"))

    def _parse(self, at_eof: bool) -> Response | None:
        buf = self.buffer
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(buf[:head_end]).lower()
        if not head.startswith(b"http/1."):
            raise ValueError("not an HTTP/1.x answer")
        status = int(head[9:12])
        body_start = head_end + 4
        close = b"\r\nconnection: close" in head or (
            head.startswith(b"http/1.0") and b"\r\nconnection: keep-alive" not in head)
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
        elif at_eof:  # no length: the body ran to the end of the connection
            body = bytes(buf[body_start:])
            del buf[:]
            close = True
        else:
            return None
        return Response(status, body, close)


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("timeout"))


class HttpConnection:
    """One keep-alive connection; ``request`` sends one request and reads its answer.

    The TCP (or TLS) connection is opened on first use and again whenever the previous one
    ended. ``ssl``: a context for ``https``; ``connect_timeout``: seconds (None: the OS's).
    """

    def __init__(self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None,
                 connect_timeout: float | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._reused = False  # the current connection has already served an answer
        authority = host.encode("idna").decode("ascii") if not host.isascii() else host
        if ":" in authority:  # an IPv6 literal
            authority = f"[{authority}]"
        if port != (443 if ssl is not None else 80):
            authority = f"{authority}:{port}"
        self._host_header = f"Host: {authority}\r\n".encode("ascii")

    @property
    def connected(self) -> bool:
        p = self._protocol
        return (p is not None and p.lost is None and p.transport is not None
                and not p.transport.is_closing())

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.connect_timeout is None:
                _, protocol = await loop.create_connection(
                    _Protocol, self.host, self.port, ssl=self.ssl)
            else:
                async with asyncio.timeout(self.connect_timeout):
                    _, protocol = await loop.create_connection(
                        _Protocol, self.host, self.port, ssl=self.ssl)
        except TimeoutError:  # asyncio's deadline, or the kernel's (ETIMEDOUT)
            raise HttpTimeout("connect timeout") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise ConnectFailed(f"connect failed: {type(exc).__name__}") from None
        self._protocol = protocol
        self._reused = False

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return
        try:
            protocol.transport.close()
        except RuntimeError:
            # Its event loop is closed (a pool used from another loop, then dropped): end the
            # TCP connection at least; the transport's finalizer frees the descriptor.
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0) -> Response:
        """``headers``: ready-made ``Name: value\\r\\n`` lines. ``timeout``: seconds from the
        write to the complete answer (None: no limit)."""
        protocol = self._protocol
        if protocol is None or not self.connected or protocol.buffer:
            # Closed by the server while idle, or stray bytes from an earlier answer: nothing
            # has been written on this connection for this request, so a new one is safe.
            self.close()
            await self.connect()
            protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        reused = self._reused
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        protocol.waiter = waiter
        bodiless = not body and method in ("GET", "HEAD")
        length = b"" if bodiless else b"Content-Length: %d\r\n" % len(body)
        protocol.transport.write(b"".join((
            f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_header,
            length, headers, b"\r\n", body,
        )))
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            response = await waiter
        except BaseException as exc:
            # Timeout, failure or cancellation: the answer may still come, so this connection
            # must never carry another request.
            self.close()
            if reused and isinstance(exc, ConnectionLost) and not protocol.buffer:
                raise ReusedConnectionClosed(str(exc)) from None
            raise
        finally:
            if timer is not None:
                timer.cancel()
            protocol.waiter = None
        if response.close:
            self.close()
        else:
            self._reused = True
        return response


class ConnectionPool:
    """Keep-alive connections to one host: a request takes an idle connection (the most
    recently used) or opens one, up to ``limit``; beyond that it waits for one to be
    returned, at most ``pool_timeout`` seconds (None: no limit). Connections idle for more
    than ``idle_timeout`` seconds are replaced rather than reused.

    A pool belongs to the event loop that uses it. Used from another loop (tests run one
    loop per test), it drops the connections of the previous one instead of reusing them.
    """

    def __init__(self, host: str, port: int, limit: int, *, ssl: _ssl.SSLContext | None = None,
                 connect_timeout: float | None = None, pool_timeout: float | None = None,
                 idle_timeout: float | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.host = host
        self.port = port
        self.limit = limit
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.idle_timeout = idle_timeout
        self._idle: list[tuple[HttpConnection, float]] = []  # (connection, idle since)
        self._waiters: collections.deque[asyncio.Future[HttpConnection | None]]
        self._waiters = collections.deque()
        self._open = 0  # connections handed out or idle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mine: set[HttpConnection] = set()  # handed out in the current loop
        self._closed = False

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0, *, idempotent: bool = False) -> Response:
        """One request on a pooled connection; ``timeout`` as for :meth:`HttpConnection.request`.

        ``idempotent``: the caller declares that the server may receive this request twice
        without effect beyond the first. Only then is a request that met
        :class:`ReusedConnectionClosed` written once more, on a new connection, within what
        is left of ``timeout``. Otherwise that error is raised like any other.
        """
        conn = await self._acquire()
        try:
            if not idempotent:
                return await conn.request(method, target, headers, body, timeout)
            started = asyncio.get_running_loop().time()
            try:
                return await conn.request(method, target, headers, body, timeout)
            except ReusedConnectionClosed:
                left = timeout
                if left is not None:
                    left -= asyncio.get_running_loop().time() - started
                    if left <= 0:
                        raise
            return await conn.request(method, target, headers, body, left)  # conn reconnects
        finally:
            self._release(conn)

    async def _acquire(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._rebind(loop)
        if self._closed:
            raise HttpError("connection pool closed")
        if self._idle:
            conn, since = self._idle.pop()
            if self.idle_timeout is not None and loop.time() - since > self.idle_timeout:
                conn.close()  # nothing written yet: it reconnects on its request
            self._mine.add(conn)
            return conn
        if self._open < self.limit:
            self._open += 1
            conn = HttpConnection(self.host, self.port, ssl=self.ssl,
                                  connect_timeout=self.connect_timeout)
            self._mine.add(conn)
            return conn
        waiter: asyncio.Future[HttpConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            if self.pool_timeout is None:
                handed = await waiter
            else:
                async with asyncio.timeout(self.pool_timeout):
                    handed = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                handed_over = waiter.result()  # handed over just as we gave up: pass it on
                if handed_over is not None:
                    self._release(handed_over)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise HttpTimeout("pool timeout") from None
            raise
        if handed is None:
            raise HttpError("connection pool closed")
        return handed

    def _release(self, conn: HttpConnection) -> None:
        if conn not in self._mine:  # from a previous event loop, or the pool was closed
            conn.close()
            return
        if self._closed:
            self._mine.discard(conn)
            self._open -= 1
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)  # still counted in self._mine and self._open
                return
        self._mine.discard(conn)
        assert self._loop is not None
        self._idle.append((conn, self._loop.time()))

    def _rebind(self, loop: asyncio.AbstractEventLoop) -> None:
        # Connections and waiters of another (most likely closed) loop cannot be used here.
        for conn, _ in self._idle:
            conn.close()
        self._idle.clear()
        self._waiters.clear()
        self._mine = set()
        self._open = 0
        self._loop = loop

    def close(self) -> None:
        """Close the idle connections now and each busy one when it is returned; later
        requests fail with :class:`HttpError`."""
        self._closed = True
        for conn, _ in self._idle:
            conn.close()
        self._open -= len(self._idle)
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def open_connections(self) -> int:
        return self._open

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ConnectionPool({self.host}:{self.port}, open={self._open}, idle={len(self._idle)})"
