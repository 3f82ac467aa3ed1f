"""A scripted HTTP/1.1 server on 127.0.0.1 for client tests: real sockets, no mocks.

Each request is parsed (head, ``Content-Length`` body) and handed to a handler, which
decides what the server does with it: answer (``Reply``, or ``Raw`` bytes), say nothing
and close (``CLOSE``), reset the connection (``RESET``) or never answer (``HANG``).

    async with StubServer(lambda seen: Reply(200, b"{}")) as stub:
        ... stub.url ...
    stub.seen  # every request, with the index of the TCP connection it came on
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

__all__ = ["CLOSE", "HANG", "RESET", "Action", "Raw", "Reply", "Seen", "StubServer", "read_head"]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    chunked: bool = False
    close: bool = False  # say "Connection: close" and close
    close_after: bool = False  # keep-alive answer, then close the connection while idle

    def encode(self) -> bytes:
        head = [f"HTTP/1.1 {self.status} X", "Content-Type: application/json"]
        if self.close:
            head.append("Connection: close")
        if self.chunked:
            head.append("Transfer-Encoding: chunked")
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(self.body[i:i + 5]), self.body[i:i + 5])
                              for i in range(0, len(self.body), 5))
            payload = chunks + b"0\r\n\r\n"
        else:
            head.append(f"Content-Length: {len(self.body)}")
            payload = self.body
        return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


@dataclass(frozen=True)
class Raw:
    data: bytes
    close: bool = False  # close the connection once written


CLOSE = "close"  # close the connection without a byte of answer
RESET = "reset"  # abort the connection (RST)
HANG = "hang"  # never answer

Action = Reply | Raw | str


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # 0 for the first TCP connection the server accepted, 1 for the next…


def read_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """A request head's method, target and headers (lower-case names)."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    return method, target, {k.strip().lower(): v.strip()
                            for k, v in (line.split(":", 1) for line in lines[1:] if line)}


@dataclass
class StubServer:
    handler: Callable[[Seen], Action]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    ended: list[int] = field(default_factory=list)  # connections that ended (either side)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _changed: asyncio.Event | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    def stop_listening(self) -> None:
        """Refuse new connections from now on (the processor went away); open ones stay."""
        assert self._server is not None
        self._server.close()

    async def wait_ended(self, index: int) -> None:
        """Until connection ``index`` has ended (wrap in a timeout)."""
        assert self._changed is not None
        while index not in self.ended:
            self._changed.clear()
            await self._changed.wait()

    def _end(self, index: int) -> None:
        self.ended.append(index)
        assert self._changed is not None
        self._changed.set()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        if self._tasks:  # let every connection's handler see its end
            await asyncio.wait(self._tasks, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, target, headers = read_head(head)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                seen = Seen(method, target, headers, body, index)
                self.seen.append(seen)
                action = self.handler(seen)
                if action == HANG:
                    with contextlib.suppress(ConnectionError):
                        await reader.read()  # until the client gives up and closes
                    return
                if action == CLOSE:
                    return
                if action == RESET:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                assert isinstance(action, Reply | Raw)
                writer.write(action.encode() if isinstance(action, Reply) else action.data)
                await writer.drain()
                if action.close or (isinstance(action, Reply) and action.close_after):
                    return
        finally:
            self._writers.discard(writer)
            writer.close()
            self._end(index)
            self._tasks.discard(task)
