"""Group commit for SQLite: many logical write transactions, one fsync.

SQLite commits one transaction at a time and, with ``synchronous=FULL``, each commit is
an fsync: ≈ 3,200 single-row commits/s against ≈ 24,700 rows/s in batches, measured on the
development machine when this was written (the figure is recorded nowhere else;
``docs/performance.md`` has the current per-payment costs). So writers share a batch:
each logical transaction ("unit") runs on the one write connection inside a ``SAVEPOINT``
— its failure rolls back only itself — and the batch's single ``COMMIT`` makes all of them
durable together. A unit's caller gets control back only after that commit, so "returned"
still means "durable". The last unit of a burst (no one else waiting) commits at once, so
an idle gateway pays no extra latency; a busy one commits at least every ``max_units``
units or ``max_age_s`` seconds.

Every unit of a batch sees the uncommitted writes of the units before it; they all commit
or all fail together, so no unit can act on a write that is then lost. A unit that leaves
the connection unusable (cancelled inside a statement, say, so that not even its own
rollback runs) loses the whole batch: every unit of it fails with :class:`BatchLost`, the
connection is dropped, and the next unit starts a new batch on a new one.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paygate_server.storage.statements import Sql, execute

__all__ = ["BatchLost", "GroupCommitter"]

# Units never nest (the lock runs them one at a time), so one savepoint name will do. They
# go straight to the driver: through SQLAlchemy's begin_nested() the savepoint and its
# release cost more than the unit's own statements.
_SAVEPOINT = Sql("SAVEPOINT paygate_unit")
_RELEASE = Sql("RELEASE SAVEPOINT paygate_unit")
_ROLLBACK = Sql("ROLLBACK TO SAVEPOINT paygate_unit")


class BatchLost(Exception):
    """The batch's connection broke before its commit: none of its units was written."""


class GroupCommitter:
    def __init__(self, engine: AsyncEngine, *, max_units: int = 256, max_age_s: float = 0.01) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._conn: AsyncConnection | None = None
        self._committed: asyncio.Future[None] | None = None
        self._units = 0
        self._started = 0.0
        self.max_units = max_units
        self.max_age_s = max_age_s
        self.batches = 0

    async def _open(self) -> None:
        conn = await self._engine.connect()
        try:
            await conn.begin()  # BEGIN IMMEDIATE (see engine._sqlite_begin)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self._committed = asyncio.get_running_loop().create_future()
        self._units = 0
        self._started = asyncio.get_running_loop().time()

    async def _commit(self) -> None:
        conn, committed = self._conn, self._committed
        assert conn is not None and committed is not None
        self._conn = self._committed = None
        try:
            await conn.commit()
        except BaseException as exc:
            committed.set_exception(exc)
            # Every unit of the batch learns it; consume here so nobody warns if a unit
            # caller was cancelled meanwhile.
            committed.exception()
        else:
            committed.set_result(None)
            self.batches += 1
        finally:
            await conn.close()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncConnection]:
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        committed: asyncio.Future[None] | None = None
        try:
            if self._conn is None:
                await self._open()
            conn, committed = self._conn, self._committed
            assert conn is not None and committed is not None
            if (failed := await self._step(execute(conn, _SAVEPOINT))) is not None:
                raise failed
            try:
                yield conn
            except BaseException:
                # The unit's own failure is what its caller hears (a cancellation stays one),
                # whether or not the batch survives it.
                if await self._step(execute(conn, _ROLLBACK)) is None:
                    await self._step(execute(conn, _RELEASE))
                raise
            else:
                if (failed := await self._step(execute(conn, _RELEASE))) is not None:
                    raise failed
                self._units += 1
            finally:
                # The last writer of a burst, or a batch that is big or old enough, commits.
                if self._conn is not None and (self._waiting == 0 or self._units >= self.max_units
                                               or asyncio.get_running_loop().time() - self._started >= self.max_age_s):
                    await self._commit()
        finally:
            self._lock.release()
        # Durable only once the batch has committed (possibly by a later unit).
        await asyncio.shield(committed)

    async def _step(self, step: Awaitable[object]) -> BaseException | None:
        """Run a savepoint step; if it fails, the connection is unusable and the batch lost
        (returns why)."""
        try:
            await step
            return None
        except BaseException as exc:
            conn, committed = self._conn, self._committed
            self._conn = self._committed = None
            if committed is not None and not committed.done():
                committed.set_exception(BatchLost(f"the write batch was lost with its connection: {exc!r}"))
                committed.exception()  # consumed here: a unit of it may have been cancelled meanwhile
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
            return exc

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._commit()
