"""A lean HTTP/1.1 keep-alive client on asyncio's protocol API, shared by the load generator
(``paygate bench``) and the simulator connector's processor calls. Answers are parsed by
``httptools`` (llhttp, the parser uvicorn and Node.js use); this module moves bytes, checks
what llhttp leaves to its user, and keeps the pool.

Why not httpx: general-purpose async clients spend more CPU per request than the gateway's
cheapest endpoints. The simulator's author measured httpx with many connections topping out
near 130 req/s on this machine, which would make the load generator the bottleneck, and
profiling the gateway under load put httpx/httpcore/anyio at ~10 % of its CPU, nearly all
of it in the processor call (~1.1 ms of CPU per call against ~0.1 ms with this client).
Why not h11: reading one processor answer costs ~40 µs of CPU with h11 against ~1.5 µs
with llhttp (and ~2 µs for the substring search it replaced).

What it does: one request at a time per connection (no pipelining), optional TLS, bodies
framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or the end of the connection,
1xx answers skipped, ``Connection: close`` honoured, heads and bodies bounded
(:data:`MAX_HEAD`, :data:`MAX_BODY`). What it does not do: redirects, proxies, cookies,
``Expect: 100-continue``, ``HEAD`` (an answer's length would be taken as a body to wait
for), HTTP/2, and codings: it asks for none, so an answer in any ``Content-Encoding`` but
``identity`` or any transfer-coding but ``chunked`` (e.g. ``gzip, chunked``) is a
:class:`MalformedResponse` as soon as its head arrives, never a wait for a body it cannot
read (docs/simulator.md).

Failures are exceptions, never statuses: :class:`HttpError` for anything that stopped an
answer from arriving, as one of its subclasses where the cause is known —
:class:`HttpTimeout`, :class:`ConnectFailed`, :class:`ConnectionLost` (with
:class:`ReusedConnectionClosed` when a reused keep-alive connection ended before the first
byte of its answer) and :class:`MalformedResponse` (with :class:`ResponseTooLarge`) — so
that callers can tell causes apart by class alone. A request that fails or is cancelled
mid-way always closes its connection, so a late answer can never be read as the answer to
the next request on it. Exception texts never contain request or answer bytes.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import socket
import ssl as _ssl
import struct
from dataclasses import dataclass
from typing import NoReturn, Protocol

import httptools

__all__ = ["MAX_BODY", "MAX_HEAD", "ConnectFailed", "ConnectionLost", "ConnectionPool", "HttpConnection",
           "HttpError", "HttpTimeout", "MalformedResponse", "Response", "ResponseTooLarge",
           "ReusedConnectionClosed", "Transport"]

# Bounds on what one answer may hold in memory. A processor answer is a few hundred bytes;
# the largest legitimate one is a day's settlement report (~200 bytes per charge or
# refund, so 32 MiB is over 100,000 records). A head beyond 64 KiB is no real server's.
MAX_HEAD = 64 * 1024
MAX_BODY = 32 * 1024 * 1024
# SO_LINGER on, 0 s: closing the socket resets the connection at once.
_LINGER_RESET = struct.pack("ii", 1, 0)


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
    """The bytes received are not a well-formed HTTP/1.x answer this client can read."""


class ResponseTooLarge(MalformedResponse):
    """The answer's head or body is larger than the client's bounds."""


class ReusedConnectionClosed(ConnectionLost):
    """A keep-alive connection that had already served a request ended before the first
    byte of the next answer: most likely the server closed it while it was idle, just as
    the request was written. Whether the request reached the server is unknown."""


@dataclass(slots=True, eq=False)
class Response:
    status: int
    body: bytes
    close: bool  # the server ends the connection after this answer
    retry_after: bytes | None = None  # the Retry-After header's value, as sent


class Transport(Protocol):
    """What a processor connector needs from its HTTP client: :class:`ConnectionPool` is
    one; tests may pass any object with these methods (the seam for scripted answers)."""

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0, *, idempotent: bool = False) -> Response: ...

    def close(self) -> None: ...


class _Protocol(asyncio.Protocol):
    """One connection's bytes in, answers out. httptools (llhttp) calls the ``on_*`` methods
    while it parses; they collect one answer and check what llhttp leaves to its user."""

    def __init__(self, max_head: int, max_body: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.max_head = max_head
        self.max_body = max_body
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.lost: BaseException | None = None
        self.received = False  # a byte of the awaited answer has arrived
        # Bytes that belong to no request (sent while none was waiting, or after the end of
        # an answer): the connection's framing can no longer be trusted.
        self.stray = False
        self._new_answer()

    def _new_answer(self) -> None:
        self._status = 0
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._head_done = False
        self._framed = False  # the head gave a Content-Length or a Transfer-Encoding
        self._retry_after: bytes | None = None
        self._keep_alive = False
        self._complete = False
        self._error: HttpError | None = None  # raised by a callback, through llhttp

    def begin(self, waiter: asyncio.Future[Response]) -> None:
        self.waiter = waiter
        self.received = False
        self._new_answer()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.stray = True
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:  # 101: not asked
            if not self._complete:
                waiter.set_exception(
                    self._error or MalformedResponse(f"malformed response: {type(exc).__name__}"))
                return
            self.stray = True  # bytes after a complete answer
        if self._complete:
            close = not self._keep_alive or self.stray
            waiter.set_result(Response(self._status, b"".join(self._body), close, self._retry_after))
        elif not self._head_done:
            # llhttp keeps no head in memory but would read one forever: bound it.
            self._head_size += len(data)
            if self._head_size > self.max_head:
                waiter.set_exception(ResponseTooLarge("response head too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("connection closed by the server")
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self._head_done and not self._framed:
            # Neither a length nor chunks: the body ends with the connection (RFC 9112
            # §6.3), which llhttp cannot be told through httptools.
            waiter.set_result(Response(self._status, b"".join(self._body), True, self._retry_after))
        else:  # no head yet, or a body cut short: the simulator's dropped answer
            waiter.set_exception(ConnectionLost(f"connection lost: {type(self.lost).__name__}"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: stop before it mixes in
            self.stray = True
            raise MalformedResponse("malformed response: bytes after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._framed = True
            if value.strip().isdigit() and int(value) > self.max_body:
                self._fail(ResponseTooLarge("response body too large"))
        elif name == b"transfer-encoding":
            self._framed = True
            if value.strip().lower() != b"chunked":
                # llhttp frames ``gzip, chunked`` by its chunks and would hand over gzip
                # bytes; no transfer-coding but chunked was asked for (no TE header sent).
                self._fail(MalformedResponse("malformed response: unsupported transfer-coding"))
        elif name == b"retry-after":
            self._retry_after = value.strip()[:64]
        elif name == b"content-encoding" and value.strip().lower() != b"identity":
            # Not asked for (no Accept-Encoding is sent) and not decoded: an answer the
            # caller cannot read, said at once instead of as a garbled body.
            self._fail(MalformedResponse("malformed response: unsupported content-coding"))

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep_alive = self.parser.should_keep_alive()
        self._head_done = True

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_body:
            self._fail(ResponseTooLarge("response body too large"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # 1xx: the final answer follows on the same request
            self._new_answer()
            return
        self._complete = True

    def _fail(self, error: HttpError) -> NoReturn:
        # llhttp turns any exception from a callback into HttpParserCallbackError and stops:
        # keep the real one for data_received to raise.
        self._error = error
        raise error


def _expire(waiter: asyncio.Future[Response]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("timeout"))


class HttpConnection:
    """One keep-alive connection; ``request`` sends one request and reads its answer.

    The TCP (or TLS) connection is opened on first use and again whenever the previous one
    ended. ``ssl``: a context for ``https``; ``connect_timeout``: seconds (None: the OS's).
    """

    def __init__(self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None,
                 connect_timeout: float | None = None, max_head: int = MAX_HEAD,
                 max_body: int = MAX_BODY) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.connect_timeout = connect_timeout
        self.max_head = max_head
        self.max_body = max_body
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
        return p is not None and p.lost is None and p.transport is not None and not p.transport.is_closing()

    async def connect(self) -> None:
        factory = functools.partial(_Protocol, self.max_head, self.max_body)
        try:
            async with asyncio.timeout(self.connect_timeout):  # None: no limit
                _, protocol = await asyncio.get_running_loop().create_connection(
                    factory, self.host, self.port, ssl=self.ssl)
        except TimeoutError:  # asyncio's deadline, or the kernel's (ETIMEDOUT)
            raise HttpTimeout("connect timeout") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            raise ConnectFailed(f"connect failed: {type(exc).__name__}") from None
        # Linger 0: whenever the socket is closed — by abort(), or by the kernel when this
        # process dies — the connection is reset and what the peer has not received is
        # dropped, never delivered later (see abort()).
        sock = protocol.transport.get_extra_info("socket") if protocol.transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._protocol = protocol
        self._reused = False

    def close(self) -> None:
        self._end(reset=False)

    def abort(self) -> None:
        """End the connection with a reset (RST: the socket lingers 0 s, see connect()),
        dropping whatever of the request the server has not received yet. A graceful close
        would let a partition that heals deliver a request given up on, then the close
        behind it: the processor would act on it after the gateway had stopped waiting, past
        the in-flight grace the reconciler relies on (docs/processing.md, "a call given up
        on is reset")."""
        self._end(reset=True)

    def _end(self, *, reset: bool) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.transport is None:
            return
        try:
            if reset:
                protocol.transport.abort()  # drops what is still buffered here; linger 0 does the rest
            else:
                protocol.transport.close()
        except RuntimeError:
            # Its event loop is closed (a pool used from another loop, then dropped): end the
            # TCP connection at least; the transport's finalizer frees the descriptor.
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0) -> Response:
        """``headers``: ready-made ``Name: value\\r\\n`` lines. ``timeout``: seconds from the
        write to the complete answer (None: no limit)."""
        protocol = self._protocol
        if protocol is None or not self.connected or protocol.stray:
            # Closed by the server while idle, or stray bytes from an earlier answer: nothing
            # has been written on this connection for this request, so a new one is safe.
            self.close()
            await self.connect()
            protocol = self._protocol
        assert protocol is not None and protocol.transport is not None
        reused = self._reused
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        protocol.begin(waiter)
        timer = None
        try:
            protocol.transport.write(self._encode(method, target, headers, body))
            if timeout is not None:
                timer = loop.call_later(timeout, _expire, waiter)
            response = await waiter
        except BaseException as exc:
            # Timeout, failure or cancellation: the answer may still come, so this connection
            # must never carry another request, and what the server has not received of
            # this one must never reach it.
            self.abort()
            if reused and isinstance(exc, ConnectionLost) and not protocol.received:
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

    def _encode(self, method: str, target: str, headers: bytes, body: bytes) -> bytes:
        bodiless = not body and method in ("GET", "HEAD")
        length = b"" if bodiless else b"Content-Length: %d\r\n" % len(body)
        return b"".join((
            f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_header,
            length, headers, b"\r\n", body,
        ))


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
        self._new_connection = functools.partial(HttpConnection, host, port, ssl=ssl, connect_timeout=connect_timeout)
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
            except ReusedConnectionClosed as closed:
                first = closed
                left = timeout
                if left is not None:
                    left -= asyncio.get_running_loop().time() - started
                    if left <= 0:
                        raise
            try:
                return await conn.request(method, target, headers, body, left)  # conn reconnects
            except ConnectFailed:
                # The first write may have reached the server, which may have acted on it and
                # gone away before answering: no new connection says nothing about that one.
                # ConnectFailed means "not a byte sent" (an operation that failed over to
                # another processor could be done twice); this is the first write's ending.
                raise first from None
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
            conn = self._new_connection()
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

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ConnectionPool({self.host}:{self.port}, open={self._open}, idle={len(self._idle)})"
