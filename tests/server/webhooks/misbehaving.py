"""Webhook endpoints that misbehave, on raw asyncio sockets (no framework misbehaves enough):
each connection is timed and its request, if one arrived, kept for checking."""
from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Connection", "MisbehavingServer", "BEHAVIOURS"]


@dataclass
class Connection:
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None  # when the gateway went away (or the server ended it)
    headers: dict[str, str] | None = None  # the request's, once read
    body: bytes = b""
    sent: int = 0  # bytes this server managed to write: what the gateway let in


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Connection], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader, conn: Connection) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    conn.body = await reader.readexactly(int(headers.get("content-length", "0")))
    conn.headers = headers


async def until_the_gateway_leaves(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def send_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection, piece: bytes,
                       *, every: float = 0.0) -> None:
    """Writes until the gateway closes: a write then fails, or (at a drip's pace) the read
    between two pieces sees the end of its stream."""
    while True:
        writer.write(piece)
        await writer.drain()
        conn.sent += len(piece)
        if every:
            try:
                if not await asyncio.wait_for(reader.read(65536), every):
                    return
            except TimeoutError:
                pass  # the gateway is still there: the next piece


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await until_the_gateway_leaves(reader)  # accepts, reads, never answers


async def late_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    await until_the_gateway_leaves(reader)  # the answer comes once the gateway has given up
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


async def drip_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
    await send_forever(reader, writer, conn, b"x", every=1.0)


async def endless_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    await send_forever(reader, writer, conn, b"10000\r\n" + b"x" * 0x10000 + b"\r\n")


async def endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    await send_forever(reader, writer, conn, b"X-Filler: " + b"y" * 4000 + b"\r\n")


async def one_endless_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: ")
    await send_forever(reader, writer, conn, b"y" * 65536)


async def drip_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    await send_forever(reader, writer, conn, b"X-Drip: 1\r\n", every=0.2)


async def reset_mid_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await reader.readuntil(b"\r\n")  # the request line, then a TCP reset (SO_LINGER 0)
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
    await read_request(reader, conn)
    writer.write(b"\x00\xffNOT HTTP\r\n\r\n")
    await writer.drain()


def answer(status: int, extra: str = "") -> Behaviour:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection) -> None:
        await read_request(reader, conn)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n{extra}\r\n".encode())
        await writer.drain()
        await until_the_gateway_leaves(reader)

    return respond


BEHAVIOURS: dict[str, Behaviour] = {
    "silent": silent, "late_ok": late_ok, "drip_body": drip_body, "endless_body": endless_body,
    "endless_headers": endless_headers, "one_endless_header": one_endless_header, "drip_headers": drip_headers,
    "reset_mid_request": reset_mid_request, "garbage": garbage,
}


class MisbehavingServer:
    def __init__(self, behaviour: Behaviour, *, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.connections: list[Connection] = []
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> MisbehavingServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/hook"

    @property
    def requests(self) -> list[Connection]:
        return [c for c in self.connections if c.headers is not None]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection()
        self.connections.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.behaviour(reader, writer, conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass  # the gateway hung up: what these endpoints wait for
        except asyncio.CancelledError:
            pass  # the test is over (asyncio's server would log a cancelled handler as an error)
        finally:
            conn.closed = time.monotonic()
            self._handlers.discard(task)
            writer.transport.abort()
