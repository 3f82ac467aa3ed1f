"""A hostile gateway for the SDK's tests: a real HTTP/1.1 server on 127.0.0.1, in a thread,
so the sync and the async client both talk to it over real sockets.

``tests/support/http_stub.StubServer`` runs on the test's event loop, where a blocking
``paygate.Client`` would freeze it; this one serves from its own threads, with the stub's
actions, ``Seen`` and head parsing, plus ``Drip``. Each request is parsed (head,
``Content-Length`` body) and handed to the handler, which answers with raw bytes (``Raw``), bytes sent piece by piece (``Drip``), or ``CLOSE`` / ``RESET`` / ``HANG``
(read the request, then say nothing until the client gives up).

    with HostileServer(lambda seen: Raw(ok_json(intent))) as server:
        ... server.url ...
    server.seen  # every request
"""

from __future__ import annotations

import json
import socket
import socketserver
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from tests.support.http_stub import CLOSE, HANG, RESET, Raw, Seen, read_head

__all__ = [
    "CLOSE",
    "HANG",
    "RESET",
    "Drip",
    "HostileServer",
    "Raw",
    "Seen",
    "answer",
    "json_answer",
]


@dataclass(frozen=True)
class Drip:
    """``parts`` written one at a time, ``gap`` seconds apart (the fault under test is the
    slowness itself), then the connection is closed."""

    parts: tuple[bytes, ...]
    gap: float


Action = Raw | Drip | str


def answer(
    status: int,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
    request_id: str = "req_hostile",
) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}", f"X-Request-Id: {request_id}"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def json_answer(status: int, body: Any, **kwargs: Any) -> bytes:
    return answer(status, json.dumps(body).encode(), **kwargs)


@dataclass
class HostileServer:
    handler: Callable[[Seen], Action]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0  # accepted so far: Seen.connection is the index of the request's
    _counting: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None
    _thread: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer._serve(self.request)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def _serve(self, sock: socket.socket) -> None:
        with self._counting:
            connection, self.connections = self.connections, self.connections + 1
        buffer = b""
        while not self._stopping.is_set():
            while b"\r\n\r\n" not in buffer:
                data = self._recv(sock)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            method, target, headers = read_head(head)
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                data = self._recv(sock)
                if not data:
                    return
                buffer += data
            body, buffer = buffer[:length], buffer[length:]
            seen = Seen(method, target, headers, body, connection)
            self.seen.append(seen)
            action = self.handler(seen)
            try:
                if action == HANG:
                    while self._recv(sock):  # until the client gives up and closes
                        pass
                    return
                if action == CLOSE:
                    return
                if action == RESET:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                # Sends block (a big answer to a slow reader must not be cut short by the
                # receive loop's polling timeout).
                sock.settimeout(None)
                if isinstance(action, Drip):
                    for part in action.parts:
                        sock.sendall(part)
                        if self._stopping.wait(action.gap):
                            return
                    return
                assert isinstance(action, Raw)
                sock.sendall(action.data)
                if action.close:
                    return
            except OSError:  # the client went away: its side of the test decides
                return

    def _recv(self, sock: socket.socket) -> bytes:
        # A short timeout so a hanging connection notices the server stopping.
        sock.settimeout(0.2)
        while not self._stopping.is_set():
            try:
                return sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return b""
        return b""
