"""A loopback TCP fault proxy: put it between a process and its database or processor,
then switch faults on and off while the test runs.

Faults (each switchable at any time from the proxy's event loop, any combination):

* **latency** — every chunk waits ``to_upstream_s`` / ``to_client_s`` before it is passed
  on, per direction; order is kept (a FIFO per direction, so lowering the latency never
  lets a later chunk overtake an earlier one);
* **reset** — :meth:`FaultProxy.reset_all` aborts every open connection on both sides
  (the client sees ``ECONNRESET``); with ``refuse=True`` each new connection is reset as
  soon as it is accepted, until switched off (a server that is down);
* **blackhole** — connections are accepted, but nothing is forwarded either way: bytes
  wait, as they would in TCP's retransmission queue during a partition. New connections
  are accepted and not connected upstream. Healing delivers what waited (in order), as a
  partition that ends before TCP gives up does — including a close the client made
  meanwhile; a client's reset drops what waited, as the sender's kernel drops its
  retransmission queue;
* **half-open** — client→server bytes are dropped (discarded, not held) while the
  connection stays open, and server→client bytes still flow: the server never hears the
  client again. A connection that lost a byte is *torn* for good (its stream can never be
  in step again): it keeps dropping, even the client's close, after the fault is switched
  off, and so are its close and its reset: only the server (a timeout of its own) ends it,
  as with a peer whose packets no longer reach the server. New connections during the
  fault are torn from the start.

:class:`FaultProxy.stats` counts what was done, for the test's report.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FaultProxy", "FaultProxyThread", "ProxyStats"]

T = TypeVar("T")

_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0
    reset: int = 0            # connections aborted by reset_all or refused on accept
    dropped_bytes: int = 0    # client→server bytes discarded (half-open)
    held_chunks: int = 0      # chunks that waited out a blackhole
    torn: int = 0             # connections that lost bytes (half-open)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter, client_reader: asyncio.StreamReader) -> None:
        self.client = client
        self.client_reader = client_reader
        self.upstream: asyncio.StreamWriter | None = None
        self.torn = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):  # linger 0: close sends RST, not FIN
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.to_upstream_s = 0.0
        self.to_client_s = 0.0
        self.refuse = False
        self.half_open = False
        self._flowing = asyncio.Event()  # cleared while blackholed
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = ProxyStats()
        self.port = 0

    # --- switches --------------------------------------------------------------------

    def latency(self, to_upstream_s: float = 0.0, to_client_s: float = 0.0) -> None:
        self.to_upstream_s, self.to_client_s = to_upstream_s, to_client_s

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    def blackhole(self, on: bool = True) -> None:
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def reset_all(self) -> int:
        """Abort every open connection now; returns how many."""
        links = list(self._links)
        for link in links:
            link.abort()
        self.stats.reset += len(links)
        return len(links)

    def heal(self) -> None:
        """Every fault off (torn connections stay torn: see the module docstring)."""
        self.latency()
        self.refuse = False
        self.half_open = False
        self.blackhole(False)

    @property
    def clients_reset(self) -> bool:
        """Whether the client of every open connection has reset it (what it sent before is
        then dropped, as a sender's kernel drops its retransmission queue on a reset)."""
        return all(link.client_reader.exception() is not None for link in self._links)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def upstream_ports(self) -> set[int]:
        """The local ports of the open upstream connections: how the server knows them
        (PostgreSQL's ``pg_stat_activity.client_port``), to tell whose a session is."""
        ports = set()
        for link in self._links:
            name = link.upstream.get_extra_info("sockname") if link.upstream is not None else None
            if name:
                ports.add(int(name[1]))
        return ports

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- forwarding ------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The work runs in a task of its own that close() cancels: asyncio's stream server
        # logs a cancelled connection callback as an error (Python 3.11).
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(writer, reader)
        self._links.add(link)
        self.stats.accepted += 1
        try:
            if self.refuse:
                link.abort()
                self.stats.reset += 1
                return
            if self.half_open:
                self._tear(link)
            await self._flowing.wait()  # a blackhole accepts, and connects nowhere
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            link.upstream = up_writer
            to_upstream = asyncio.ensure_future(self._pump(reader, up_writer, link, upstream=True))
            to_client = asyncio.ensure_future(self._pump(up_reader, writer, link, upstream=False))
            pending = {to_upstream, to_client}
            try:
                while pending:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for pump in done:
                        pump.result()  # a reset on either side ends the link (below)
                    if to_client in done and link.torn:
                        break  # the server closed a torn link: nothing can cross it any more
            finally:
                for pump in (to_upstream, to_client):
                    pump.cancel()
                await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        except (ConnectionError, OSError):
            pass  # a reset (ours or a peer's) or an upstream that refused: the link is gone
        finally:
            self._links.discard(link)
            link.abort()

    def _tear(self, link: _Link) -> None:
        if not link.torn:
            link.torn = True
            self.stats.torn += 1

    @staticmethod
    async def _read(source: asyncio.StreamReader, link: _Link, upstream: bool) -> bytes:
        try:
            return await source.read(_CHUNK)
        except (ConnectionError, OSError):
            if upstream and link.torn:
                return b""  # the client's reset is lost like its bytes
            raise

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link,
                    *, upstream: bool) -> None:
        """Read from one side and deliver to the other after the direction's latency, in
        order. Reading and delivering are separate tasks so a latency does not slow the
        reading (the bytes are "on the wire" meanwhile)."""
        queue: deque[tuple[float, bytes]] = deque()
        ready = asyncio.Event()
        done = False

        async def deliver() -> None:
            while True:
                while not queue:
                    if done:
                        return
                    ready.clear()
                    await ready.wait()
                due, data = queue[0]
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the latency being injected
                if not self._flowing.is_set():
                    self.stats.held_chunks += 1
                    await self._flowing.wait()
                queue.popleft()
                if data and not sink.is_closing():
                    try:
                        sink.write(data)
                        await sink.drain()
                    except (ConnectionError, OSError):
                        if not link.torn:
                            raise
                        # A torn link's client is gone, and its reset is lost with the
                        # rest: the server goes on sending into the void.

        delivering = asyncio.ensure_future(deliver())
        try:
            while data := await self._read(source, link, upstream):
                if upstream and (self.half_open or link.torn):
                    self._tear(link)
                    self.stats.dropped_bytes += len(data)
                    continue
                latency = self.to_upstream_s if upstream else self.to_client_s
                queue.append((time.monotonic() + latency, data))
                ready.set()
            done = True
            ready.set()
            await delivering
            if upstream and link.torn:
                return  # the client's close is lost too: only the server ends the link
            with contextlib.suppress(OSError):
                sink.write_eof()  # pass the close on (half-close), as TCP would
        finally:
            delivering.cancel()
            await asyncio.gather(delivering, return_exceptions=True)


class FaultProxyThread:
    """A :class:`FaultProxy` on an event loop of its own thread, for tests whose own thread
    blocks (starting a process, waiting on one) while the proxy must keep forwarding.

    Every switch is run on the proxy's loop and waited for, so it has taken effect when
    the call returns.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self._args = (upstream_host, upstream_port, listen_host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self.proxy: FaultProxy | None = None

    def __enter__(self) -> FaultProxyThread:
        self._thread.start()
        host, port, listen = self._args

        async def start() -> FaultProxy:
            proxy = FaultProxy(host, port, listen_host=listen)
            await proxy.start()
            return proxy

        self.proxy = self._run(start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proxy is not None:
            self._run(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, fn: Callable[[FaultProxy], T]) -> T:
        """``fn(proxy)`` on the proxy's loop; its result."""
        assert self.proxy is not None
        proxy = self.proxy

        async def run() -> T:
            return fn(proxy)

        return self._run(run())

    @property
    def port(self) -> int:
        assert self.proxy is not None
        return self.proxy.port

    @property
    def stats(self) -> ProxyStats:
        return self.call(lambda p: dataclasses.replace(p.stats))

    def latency(self, to_upstream_s: float = 0.0, to_client_s: float = 0.0) -> None:
        self.call(lambda p: p.latency(to_upstream_s, to_client_s))

    def blackhole(self, on: bool = True) -> None:
        self.call(lambda p: p.blackhole(on))

    def half_open(self, on: bool = True) -> None:
        self.call(lambda p: setattr(p, "half_open", on))

    def refuse(self, on: bool = True) -> None:
        self.call(lambda p: setattr(p, "refuse", on))

    def reset_all(self) -> int:
        return self.call(lambda p: p.reset_all())

    def heal(self) -> None:
        self.call(lambda p: p.heal())

    def upstream_ports(self) -> set[int]:
        return self.call(lambda p: p.upstream_ports())
