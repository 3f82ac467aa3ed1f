"""The store's one writer: a thread that owns the write connection and runs operations
in group-committed batches (see ``store.py`` for why).

It knows nothing of the tables: an operation is a function of the connection, run inside
the batch's transaction; its value (or exception) goes back to the awaiting coroutine once
the batch is committed. If one operation fails, the batch is rolled back and each one runs
again alone, so a bad operation neither half-commits nor takes the others down.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["MAX_BATCH", "Connection", "Writer"]

# Upper bound of operations per transaction: big enough to amortise the fsync, small
# enough that one batch never holds the write lock for long.
MAX_BATCH = 1024


class Connection(Protocol):
    """What the writer needs of a DB-API connection (SQLite's, here)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Connection)
_Item = tuple[Callable[[C], Any], "asyncio.Future[Any]"]


def _deliver(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, error in results:
        if fut.done():  # the awaiting request was cancelled
            continue
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)


class Writer(threading.Thread, Generic[C]):
    """Owns the only write connection; runs operations in group-committed batches."""

    def __init__(self, conn: C, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="simulator-store-writer", daemon=True)
        self._conn = conn
        self._loop = loop
        self.queue: queue.SimpleQueue[_Item[C] | None] = queue.SimpleQueue()

    def run(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._loop.call_soon_threadsafe(_deliver, self._run_batch(batch))
        self._conn.close()

    def _run_batch(
        self, batch: list[_Item[C]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [
                (fut, op(conn), None) for op, fut in batch
            ]
            conn.execute("COMMIT")
            return results
        except Exception:  # noqa: BLE001 - retried below, one operation at a time
            _rollback(conn)
        # Something in the batch failed: run each operation in its own transaction, so
        # that one bad operation neither half-commits nor takes the others down with it.
        # (Cheaper than a savepoint per operation on the fast path.)
        out: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        for op, fut in batch:
            value, error = self._run_alone(op)
            out.append((fut, value, error))
        return out

    def _run_alone(
        self, op: Callable[[C], Any]
    ) -> tuple[Any, BaseException | None]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            value = op(conn)
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting request
            _rollback(conn)
            return None, exc
        return value, None


def _rollback(conn: Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the driver's "no transaction is active"
        pass  # no transaction was open


