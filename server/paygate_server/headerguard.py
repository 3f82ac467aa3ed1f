"""Limits on a request's head (request line + headers), for every paygate HTTP server.

httptools, under uvicorn, has no limit of its own: it keeps an unterminated header in
memory for as long as bytes keep coming (four connections sending 64 MB headers took the
gateway from 95 MB to 356 MB), answers an 8 MB header or 20,000 headers like any other
request, and waits forever for a head that never ends (slow-loris). uvicorn only times out
*idle* keep-alive connections, not a head in progress, nor a new connection's first one.

:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with three limits:

* **size** — the bytes of one head, counted as they arrive (before httptools has seen a
  complete header line, so an unterminated header is refused after ``max_head_bytes``, not
  after it ends), and exactly from the parsed request line and fields once they are
  complete. Over: ``431 Request Header Fields Too Large``, then close.
* **count** — more than ``max_headers`` header fields: ``431``, then close.
* **time** — a head not complete ``head_timeout_s`` after the connection opened (first
  request) or after its first byte arrived (later requests on a keep-alive connection):
  the connection is closed without an answer (the client is gone or hostile; nginx's
  ``client_header_timeout`` does the same in spirit). Likewise a body not complete
  ``body_timeout_s`` after its head: a head announcing ``Content-Length: 65536`` and then
  a byte now and then (or none) held its connection for as long as the client liked —
  the head's limit, one step later, unauthenticated (the API reads a body before it checks
  the signature over it).

The gateway (``paygate serve``), the simulator and the sample storefront all run on it
(:func:`uvicorn_http_options`), so the three answer the same way. Limits come from
``PAYGATE_HTTP_MAX_HEAD_BYTES`` (16384), ``PAYGATE_HTTP_MAX_HEADERS`` (100),
``PAYGATE_HTTP_HEAD_TIMEOUT_S`` (10) and ``PAYGATE_HTTP_BODY_TIMEOUT_S`` (30), read once when
a server process starts.

This module imports neither Starlette nor the gateway: the storefront uses it too.
"""
from __future__ import annotations

import asyncio
import os
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["KEEP_ALIVE_S", "HeadLimits", "GuardedHttpToolsProtocol", "HeadTooLarge", "keep_alive_s", "uvicorn_http_options"]


@dataclass(frozen=True)
class HeadLimits:
    max_head_bytes: int = 16 * 1024
    max_headers: int = 100
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> HeadLimits:
        env = dict(os.environ) if env is None else env
        d = cls()
        limits = cls(
            max_head_bytes=int(env.get("PAYGATE_HTTP_MAX_HEAD_BYTES", d.max_head_bytes)),
            max_headers=int(env.get("PAYGATE_HTTP_MAX_HEADERS", d.max_headers)),
            head_timeout_s=float(env.get("PAYGATE_HTTP_HEAD_TIMEOUT_S", d.head_timeout_s)),
            body_timeout_s=float(env.get("PAYGATE_HTTP_BODY_TIMEOUT_S", d.body_timeout_s)),
        )
        if (limits.max_head_bytes < 1024 or limits.max_headers < 1 or not limits.head_timeout_s > 0
                or not limits.body_timeout_s > 0):
            raise ValueError("PAYGATE_HTTP_MAX_HEAD_BYTES must be >= 1024, PAYGATE_HTTP_MAX_HEADERS >= 1, "
                             "PAYGATE_HTTP_HEAD_TIMEOUT_S > 0 and PAYGATE_HTTP_BODY_TIMEOUT_S > 0")
        return limits


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops parsing, and the head is refused."""


def _answer(status_line: bytes, code: str, message: str) -> bytes:
    # The SPEC §2 error shape, with a request id of its own (the app never saw the request).
    rid = "req_" + secrets.token_hex(12)
    body = ('{"error":{"type":"invalid_request_error","code":"' + code + '",'
            f'"message":"{message}","requestId":"{rid}"}}}}').encode("ascii")
    return (status_line + b"\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
            b"x-request-id: " + rid.encode("ascii") + b"\r\n"
            b"connection: close\r\n\r\n" + body)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request head (module docstring)."""

    limits: ClassVar[HeadLimits] = HeadLimits.from_env()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts by waiting for a head
        self._head_bytes = 0  # bytes of the current head (an upper bound until it is complete)
        self._head_fields = 0
        self._refusal: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None  # armed from a head's end to its body's

    # -- the time limit ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _disarm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        # The app waiting for the rest of the body sees the client disconnect (and the API
        # answers no one: http/api.py read_body).
        self._body_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # -- size and count ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # refused and closing: read nothing more
        super().data_received(data)
        if self._in_head and self._refusal is None and not self.transport.is_closing():
            # The head is still incomplete after this chunk, so (apart from the tail of a
            # pipelined previous request) every byte of it belongs to the head: count it
            # now, because httptools reports a header only once its line has ended.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(f"request headers over {self.limits.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on a keep-alive connection: its own clock
            self._in_head = True
            self._arm_head_timer()
        self._head_bytes = 0
        self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.limits.max_headers:
            self._refusal = f"more than {self.limits.max_headers} request headers"
            raise HeadTooLarge(self._refusal)
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.limits.max_head_bytes:
            self._refusal = f"request headers over {self.limits.max_head_bytes} bytes"
            raise HeadTooLarge(self._refusal)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()
        self._disarm_body_timer()
        self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm_body_timer()  # a request without a body ends with its head: never armed for long
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any exception out of a parser callback with a 400; ours is a 431.
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        # Not HTTP/1.1 httptools can read (a bad request line, header or Content-Length):
        # uvicorn's plain-text 400 carried no X-Request-Id and not the error shape (SPEC §2).
        self._disarm_head_timer()
        self.transport.write(_answer(b"HTTP/1.1 400 Bad Request", "parameter_invalid",
                                     "the request is not valid HTTP/1.1"))
        self.transport.close()

    def _refuse(self, message: str) -> None:
        self._refusal = message
        self._disarm_head_timer()
        self.transport.write(_answer(b"HTTP/1.1 431 Request Header Fields Too Large", "headers_too_large", message))
        self.transport.close()


#: How long an idle keep-alive connection stays open. Longer than a client's own idle expiry
#: (httpx: 5 s, browsers: 60 s or less), so the client closes first: with uvicorn's 5 s,
#: equal to httpx's, a request sent on a connection just as the server closed it met a reset
#: (an `httpx.ReadError` on a POST, which no client may blindly retry). nginx's default.
KEEP_ALIVE_S = 75.0


def keep_alive_s(env: dict[str, str] | None = None) -> float:
    value = float((os.environ if env is None else env).get("PAYGATE_HTTP_KEEPALIVE_S", KEEP_ALIVE_S))
    if not value > 0:
        raise ValueError("PAYGATE_HTTP_KEEPALIVE_S must be > 0")
    return value


def uvicorn_http_options() -> dict[str, Any]:
    """What every paygate server passes to uvicorn: the guarded protocol, no Server header,
    the idle keep-alive time (:data:`KEEP_ALIVE_S`)."""
    return {"http": GuardedHttpToolsProtocol, "server_header": False, "timeout_keep_alive": keep_alive_s()}
