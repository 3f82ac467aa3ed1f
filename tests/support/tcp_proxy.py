"""A loopback TCP proxy that loses chosen answers: for the "answer lost after the
processor acted" tests.

Every byte is forwarded both ways, except that when a chunk the client sends matches
``drop`` (e.g. the request line of a confirm), the request still goes to the upstream
server, which acts on it, but as soon as its answer starts to come back the client's
connection is cut (reset): the client saw the request leave and no answer arrive.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["DroppingProxy"]


class DroppingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, drop: Callable[[bytes], bool]) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._drop = drop
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0  # answers cut off

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        # Set before the matching request is forwarded, so its answer cannot overtake it.
        dropping = asyncio.Event()

        async def client_to_upstream() -> None:
            while data := await reader.read(65536):
                if self._drop(data):
                    dropping.set()
                up_writer.write(data)
                await up_writer.drain()

        async def upstream_to_client() -> None:
            while data := await up_reader.read(65536):
                if dropping.is_set():
                    self.dropped += 1
                    writer.transport.abort()  # a reset: no byte of the answer reaches the client
                    return
                writer.write(data)
                await writer.drain()

        try:
            pumps = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pending:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)
