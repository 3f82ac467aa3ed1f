"""An asyncio loop on a thread of its own, for synchronous tests (hypothesis's) that need
async servers (:class:`~tests.support.http_stub.StubServer`) serving while they run."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

__all__ = ["BackgroundLoop"]

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="background-loop", daemon=True)
        self._exits: list[AbstractAsyncContextManager[Any]] = []

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def enter(self, manager: AbstractAsyncContextManager[T]) -> T:
        """Enter ``manager`` on the loop; it is exited (last in, first out) when this closes."""
        value = self.run(manager.__aenter__())
        self._exits.append(manager)
        return value

    def __exit__(self, *exc: object) -> None:
        try:
            while self._exits:
                self.run(self._exits.pop().__aexit__(None, None, None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
