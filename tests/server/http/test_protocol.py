"""The serving protocol: one write per response, streaming unharmed, close never cuts a reply."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from paygate_server.http.protocol import CoalescingHttpToolsProtocol, CoalescingTransport


class RecordingTransport:
    """The real transport's stand-in: what was written, in which calls, and closing."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _next_turn() -> None:
    # call_soon callbacks run in the order they were scheduled, so one scheduled now runs
    # after the transport's flush.
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_writes_of_one_turn_leave_together_and_later_turns_separately() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(b"{}")
    assert real.writes == [], "held until the end of the turn"
    await _next_turn()
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    transport.write(b"data: 1\n\n")
    await _next_turn()
    transport.write(b"data: 2\n\n")
    await _next_turn()
    assert real.writes[1:] == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_close_sends_what_is_held_first_and_nothing_is_written_after() -> None:
    real = RecordingTransport()
    transport = CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"last words")
    transport.close()
    assert real.writes == [b"last words"] and real.closed
    transport.write(b"too late")
    await _next_turn()
    assert real.writes == [b"last words"]
    assert transport.is_closing()
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)


def _counting(protocol: type[HttpToolsProtocol], writes: list[int]) -> type[HttpToolsProtocol]:
    """``protocol`` on a real transport that counts the socket writes of each connection."""

    class Counting(protocol):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            real_write = transport.write

            def write(data: bytes) -> None:
                writes.append(len(data))
                real_write(data)

            transport.write = write  # type: ignore[method-assign]
            super().connection_made(transport)

    return Counting



async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await scope["state"]["release"].wait()  # the client has seen the first chunk
        await send({"type": "http.response.body", "body": b"data: last\n\n", "more_body": False})
        return
    body = b'{"status":"ok"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[tuple[uvicorn.Server, socket.socket]] = []

    async def start(protocol: type[HttpToolsProtocol], release: asyncio.Event) -> int:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope["state"] = {"release": release}
            await _app(scope, receive, send)

        config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning")
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await server.startup(sockets=[sock])
        servers.append((server, sock))
        return int(sock.getsockname()[1])

    yield start
    for server, sock in servers:
        await server.shutdown(sockets=[sock])


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    return head, await reader.readexactly(length)


@pytest.mark.parametrize(("protocol", "writes_per_response"), [
    (CoalescingHttpToolsProtocol, 1),
    (HttpToolsProtocol, 2),  # uvicorn's own: what this module exists to change
])
async def test_a_complete_response_is_one_socket_write(
    serve: Any, protocol: type[HttpToolsProtocol], writes_per_response: int,
) -> None:
    writes: list[int] = []
    port = await serve(_counting(protocol, writes), asyncio.Event())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(3):  # keep-alive: three requests on one connection
        writer.write(b"GET /json HTTP/1.1\r\nhost: t\r\n\r\n")
        head, body = await _read_response(reader)
        assert head.startswith(b"HTTP/1.1 200") and body == b'{"status":"ok"}'
    assert len(writes) == 3 * writes_per_response
    writer.write(b"GET /json HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
    head, body = await _read_response(reader)
    assert body == b'{"status":"ok"}', "closing after the reply never cuts it short"
    assert await reader.read() == b"", "the server closed the connection"
    writer.close()


async def test_a_streamed_chunk_leaves_before_the_stream_ends(serve: Any) -> None:
    release = asyncio.Event()
    port = await serve(CoalescingHttpToolsProtocol, release)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    # Bounded: were the chunk held back until the stream ends, it would never come.
    async with asyncio.timeout(10):
        first = await reader.readuntil(b"\n\n\r\n")  # chunk size line, the event, chunk end
    assert first == b"d\r\ndata: first\n\n\r\n", "the first event arrives while the app still holds the stream"
    release.set()
    rest = await reader.readuntil(b"0\r\n\r\n")
    assert b"data: last" in rest
    writer.close()
