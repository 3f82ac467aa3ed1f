"""The fault proxy on its own, against a loopback echo server: each fault does what it says
and healing restores service to new connections."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxy

GREETING = b"hello\n"
# How long "nothing arrives" is watched for: a loopback echo answers in well under 1 ms.
QUIET_S = 0.3


class EchoServer:
    """Greets each connection, then echoes every line; keeps what it received."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.peer_ports: set[int] = set()  # the client ports the server saw
        self.port = 0

    def hang_up(self) -> None:
        """Close every connection from the server's side (as a server timeout would)."""
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.peer_ports.add(writer.get_extra_info("peername")[1])
        writer.write(GREETING)
        try:
            while line := await reader.readline():
                self.received += line
                writer.write(line)
                await writer.drain()
            self.closed_by_client += 1
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as p:
        yield p


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def _round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line)
    await writer.drain()
    return await asyncio.wait_for(reader.readline(), 5)


async def test_forwards_both_ways(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await _connect(proxy)
    assert await reader.readline() == GREETING
    assert await _round_trip(reader, writer, b"ping\n") == b"ping\n"
    writer.write_eof()  # the client's close reaches the server
    await eventually(lambda: echo.closed_by_client, what="the server to see the close")
    writer.close()


async def test_latency_per_direction_delays_in_order(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    await reader.readline()
    proxy.latency(to_upstream_s=0.15, to_client_s=0.1)
    started = time.monotonic()
    writer.write(b"a\nb\nc\n")
    await writer.drain()
    got = [await asyncio.wait_for(reader.readline(), 5) for _ in range(3)]
    assert got == [b"a\n", b"b\n", b"c\n"]
    assert time.monotonic() - started >= 0.25
    proxy.latency()
    started = time.monotonic()
    assert await _round_trip(reader, writer, b"d\n") == b"d\n"
    assert time.monotonic() - started < 0.25
    writer.close()


async def test_reset_all_resets_open_connections_and_refuse_resets_new_ones(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    await reader.readline()
    assert proxy.reset_all() == 1
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1) or reader.read(1), 5)
        # (an empty read would be a FIN: the proxy sends RST, so read raises)
    writer.close()

    proxy.refuse = True
    reader, writer = await _connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(1), 5)
    writer.close()
    assert proxy.stats.reset == 2

    proxy.heal()
    reader, writer = await _connect(proxy)
    assert await reader.readline() == GREETING
    writer.close()


async def test_blackhole_holds_everything_and_healing_delivers_it(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await _connect(proxy)
    await reader.readline()
    proxy.blackhole()
    writer.write(b"held\n")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readline(), QUIET_S)
    assert echo.received == b""
    # A new connection is accepted but goes nowhere: not even the greeting.
    reader2, writer2 = await _connect(proxy)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader2.readline(), QUIET_S)
    proxy.blackhole(False)
    assert await asyncio.wait_for(reader.readline(), 5) == b"held\n"
    assert await asyncio.wait_for(reader2.readline(), 5) == GREETING
    assert proxy.stats.held_chunks >= 1
    writer.close()
    writer2.close()


async def test_half_open_drops_client_bytes_keeps_server_bytes_and_stays_torn(
        proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await _connect(proxy)
    await reader.readline()
    proxy.half_open = True
    writer.write(b"lost\n")
    await writer.drain()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readline(), QUIET_S)
    await eventually(lambda: proxy.stats.dropped_bytes, what="the bytes to be dropped")
    # A connection made during the fault: the server's greeting still arrives (server→client
    # flows), nothing the client sends does.
    reader2, writer2 = await _connect(proxy)
    assert await asyncio.wait_for(reader2.readline(), 5) == GREETING
    assert await _round_trip_or_none(reader2, writer2, b"also lost\n") is None

    proxy.heal()
    # Torn for good: the first connection still loses what it sends, and its close.
    assert await _round_trip_or_none(reader, writer, b"after\n") is None
    writer.close()
    reader3, writer3 = await _connect(proxy)
    assert await reader3.readline() == GREETING
    assert await _round_trip(reader3, writer3, b"fresh\n") == b"fresh\n"
    assert echo.received == b"fresh\n"
    assert echo.closed_by_client == 0
    assert proxy.stats.torn == 2
    writer2.close()
    writer3.close()


async def _round_trip_or_none(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes | None:
    writer.write(line)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), QUIET_S)
    except TimeoutError:
        return None


async def test_a_torn_connection_ends_when_the_server_closes_it(proxy: FaultProxy, echo: EchoServer) -> None:
    reader, writer = await _connect(proxy)
    await reader.readline()
    proxy.half_open = True
    writer.write(b"x\n")
    await writer.drain()
    await eventually(lambda: proxy.stats.torn, what="the connection to be torn")
    assert proxy.open_connections == 1
    echo.hang_up()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server's close reaches the client
    await eventually(lambda: proxy.open_connections == 0, what="the link to be gone")
    writer.close()


async def test_upstream_ports_are_the_ports_the_server_sees(proxy: FaultProxy, echo: EchoServer) -> None:
    """How a test traces a server-side session (pg_stat_activity.client_port) to its proxy."""
    connections = [await _connect(proxy) for _ in range(3)]
    for reader, _ in connections:
        await reader.readline()
    assert proxy.upstream_ports() == echo.peer_ports and len(echo.peer_ports) == 3
    for _, writer in connections:
        writer.close()
