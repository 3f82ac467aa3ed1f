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
or all fail together, so no unit can act on a write that is then lost.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paygate_server.storage.statements import Sql, execute

__all__ = ["GroupCommitter"]

# Units never nest (the lock runs them one at a time), so one savepoint name will do. They
# go straight to the driver: through SQLAlchemy's begin_nested() the savepoint and its
# release cost more than the unit's own statements.
_SAVEPOINT = Sql("SAVEPOINT paygate_unit")
_RELEASE = Sql("RELEASE SAVEPOINT paygate_unit")
_ROLLBACK = Sql("ROLLBACK TO SAVEPOINT paygate_unit")


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
        self.units_committed = 0

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
        self._started = time.monotonic()

    async def _commit(self) -> None:
        conn, committed, units = self._conn, self._committed, self._units
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
            self.units_committed += units
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
            await execute(conn, _SAVEPOINT)
            try:
                yield conn
            except BaseException:
                await execute(conn, _ROLLBACK)
                await execute(conn, _RELEASE)
                raise
            else:
                await execute(conn, _RELEASE)
                self._units += 1
            finally:
                # The last writer of a burst, or a batch that is big or old enough, commits.
                if (self._waiting == 0 or self._units >= self.max_units
                        or time.monotonic() - self._started >= self.max_age_s):
                    await self._commit()
        finally:
            self._lock.release()
        # Durable only once the batch has committed (possibly by a later unit).
        await asyncio.shield(committed)

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                await self._commit()
