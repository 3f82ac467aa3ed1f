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

A unit whose task is cancelled (a shutdown, an ``asyncio.timeout`` around a write, a client
gone) fails alone, like any failing unit: its caller hears ``CancelledError`` and the batch
goes on. That holds because nothing on the connection is left half done. A connection's
calls run one after the other: the gateway's (storage/loop_sqlite.py) run a unit's
statements on the loop's thread, where no cancellation can cut one short, and what can wait
(the BEGIN, the COMMIT) on a worker thread, in order; aiosqlite's run every call on the
connection's thread. Either way a statement whose caller was cancelled still runs to its end,
and whatever is sent next (the unit's ``ROLLBACK TO SAVEPOINT``) queues behind it. SQLAlchemy, though, treats a cancellation inside one of its
statements as a reason to drop the connection, which would take the batch with it: for the
batch's connection that is switched off (its public ``handle_error`` event). A cancellation
that arrives while the unit's own savepoint steps are in flight is held until they are done
(the steps still run, in order), and the batch's commit runs as a task of its own that the
committing unit waits for, however often it is cancelled meanwhile: every unit of a batch
learns the commit's true outcome. Cancelled once its work is done (during its ``RELEASE``,
the commit, or the wait for it), a unit's writes are part of the batch: its caller hears
``CancelledError``, as for any cancelled call whose outcome it did not wait for.

A unit that ends while others wait for their turn leaves the batch's commit to them. If
the last of them is cancelled before its turn, a task commits the batch in its place:
otherwise the batch — and SQLite's write lock — would stay open until some later write,
its units' callers waiting for it (found by the simulation: seed 477126 and three others).

A connection that really breaks (a step fails) loses the whole batch: every unit of it
fails with :class:`BatchLost` — nothing of the batch was written, the connection is closed
with its transaction, so retrying is safe and the HTTP layer answers ``503`` with
``Retry-After`` (storage/availability.py) — and the next unit starts a new batch on a new
connection.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from paygate_server.storage.availability import DatabaseUnavailable
from paygate_server.storage.statements import Sql, execute

__all__ = ["BatchLost", "GroupCommitter"]

T = TypeVar("T")

# Units never nest (the lock runs them one at a time), so one savepoint name will do. They
# go straight to the driver: through SQLAlchemy's begin_nested() the savepoint and its
# release cost more than the unit's own statements.
_SAVEPOINT = Sql("SAVEPOINT paygate_unit")
_RELEASE = Sql("RELEASE SAVEPOINT paygate_unit")
_ROLLBACK = Sql("ROLLBACK TO SAVEPOINT paygate_unit")

# Cancellations of a unit's task that arrived while its connection was busy: acted on (the
# first one raised) once the unit has left the connection in order.
_Held = list[asyncio.CancelledError]


class BatchLost(DatabaseUnavailable):
    """The batch's connection broke before its commit: none of its units was written."""


async def _to_the_end(work: Coroutine[Any, Any, T], held: _Held) -> T:
    """Run ``work`` as a task of its own to its end, however often the caller is cancelled
    meanwhile (each cancellation goes to ``held``)."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError as cancelled:
            if task.done():  # the work itself was cancelled (its loop is being torn down)
                raise
            held.append(cancelled)


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
        self._committing: set[asyncio.Task[None]] = set()  # see _commit_left_open
        # Registered on the engine's dialect (SQLAlchemy's only target for this event); it
        # acts on this committer's batch connection alone.
        event.listen(engine.sync_engine, "handle_error", self._cancelled_statement)

    def _cancelled_statement(self, context: ExceptionContext) -> None:
        """A unit cancelled inside a SQLAlchemy statement keeps the batch's connection: the
        statement still ends on the connection's thread before anything else runs there
        (see the module's doc), so the unit's rollback finds it in order."""
        if (isinstance(context.original_exception, asyncio.CancelledError) and self._conn is not None
                and context.connection is not None and context.connection is self._conn.sync_connection):
            context.is_disconnect = False

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

    async def _commit(self, held: _Held) -> None:
        conn, committed = self._conn, self._committed
        assert conn is not None and committed is not None
        self._conn = self._committed = None
        await _to_the_end(self._commit_batch(conn, committed), held)

    async def _commit_batch(self, conn: AsyncConnection, committed: asyncio.Future[None]) -> None:
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
        except BaseException:
            self._waiting -= 1
            if self._waiting == 0 and self._conn is not None:
                # The unit before left the commit to a waiting one, and the last of those
                # gives up: without this the batch — and the write lock — would stay open
                # until some later write came, and its units' callers would wait for it.
                self._commit_left_open()
            raise
        self._waiting -= 1
        committed: asyncio.Future[None] | None = None
        held: _Held = []
        try:
            if self._conn is None:
                await self._open()
            conn, committed = self._conn, self._committed
            assert conn is not None and committed is not None
            if (failed := await self._step(conn, _SAVEPOINT, held)) is not None:
                raise failed
            try:
                if held:
                    raise held[0]  # cancelled before its work began: undone like any failure
                yield conn
            except BaseException:
                # Undone alone, if the batch survives (a step that fails loses it).
                if self._conn is conn and await self._step(conn, _ROLLBACK, held) is None:
                    await self._step(conn, _RELEASE, held)
                raise
            else:
                if (failed := await self._step(conn, _RELEASE, held)) is not None:
                    raise failed
                self._units += 1
            finally:
                # The last writer of a burst, or a batch that is big or old enough, commits.
                if self._conn is not None and (self._waiting == 0 or self._units >= self.max_units
                                               or asyncio.get_running_loop().time() - self._started >= self.max_age_s):
                    await self._commit(held)
        except asyncio.CancelledError:
            raise
        except BaseException:
            # The unit's own failure is what its caller hears, unless its task was
            # cancelled meanwhile: a cancelled task ends cancelled (asyncio.timeout counts on it).
            if held:
                raise held[0]  # noqa: B904 - the failure stays its context
            raise
        finally:
            self._lock.release()
        if held:
            raise held[0]
        # Durable only once the batch has committed (possibly by a later unit).
        await asyncio.shield(committed)

    def _commit_left_open(self) -> None:
        async def commit() -> None:
            held: _Held = []
            async with self._lock:
                # A unit that came meanwhile and still waits commits the batch itself.
                if self._conn is not None and self._waiting == 0:
                    await self._commit(held)

        task = asyncio.ensure_future(commit())
        self._committing.add(task)
        task.add_done_callback(self._committing.discard)

    async def _step(self, conn: AsyncConnection, sql: Sql, held: _Held) -> BaseException | None:
        """Run a savepoint step. A cancellation meanwhile is held, not acted on: the step
        still runs on the connection's thread, and what the unit sends next queues behind
        it. If the step fails, the connection is unusable and the batch lost: returns the
        :class:`BatchLost` every unit of it hears."""
        try:
            await execute(conn, sql)
            return None
        except asyncio.CancelledError as cancelled:
            held.append(cancelled)
            return None
        except BaseException as exc:
            lost = BatchLost(f"the write batch was lost with its connection: {exc!r}")
            lost.__cause__ = exc
            await _to_the_end(self._lose(lost), held)
            return lost

    async def _lose(self, lost: BatchLost) -> None:
        conn, committed = self._conn, self._committed
        self._conn = self._committed = None
        if committed is not None and not committed.done():
            committed.set_exception(lost)
            committed.exception()  # consumed here: a unit of it may have been cancelled meanwhile
        if conn is not None:
            # Closing the connection discards its transaction: nothing of the batch is written.
            with contextlib.suppress(Exception):
                await conn.invalidate()
                await conn.close()

    async def close(self) -> None:
        held: _Held = []
        async with self._lock:
            if self._conn is not None:
                await self._commit(held)
        if held:
            raise held[0]
