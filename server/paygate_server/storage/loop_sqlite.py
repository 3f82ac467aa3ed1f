"""The gateway's SQLite driver connection: aiosqlite's interface, without a thread for
what cannot wait.

aiosqlite runs every call of a connection on the connection's worker thread and hands the
result back with ``call_soon_threadsafe``: two thread switches and a wake-up of the loop per
call, which cost more than most of the gateway's statements themselves (about a third of its
CPU per SQLite payment, docs/perf/history.md, "SQLite without the thread hop"). Here a call
that cannot wait runs at once on the loop's thread, and only one that can — on a lock or on
the disk — goes to a worker thread (:class:`LoopConnection` says which is which). The
simulation's gateway processes use the same connection: its loop runs ``run_in_executor``'s
function at once, so no thread decides the order of anything (docs/reliability.md,
"Determinism: the mechanism").

Only what the gateway reaches of an ``aiosqlite.Connection`` is here: SQLAlchemy's aiosqlite
dialect (cursors, commit, rollback, close, terminate, and the isolation-level change it
queues on ``_tx`` with a future of its own) and :mod:`paygate_server.storage.statements`
(``execute``, ``execute_fetchall``, ``row_factory``). Something else is an
``AttributeError``, never a silent difference. It is given to the engine through
SQLAlchemy's public ``async_creator`` (:func:`paygate_server.storage.create_database`).
"""
from __future__ import annotations

import asyncio
import re
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Generic, Literal, TypeVar

__all__ = ["LoopConnection", "loop_creator"]

T = TypeVar("T")


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _RunAtOnce:
    """Stands where aiosqlite's queue to its thread stands, for the one call SQLAlchemy's
    dialect puts there itself (an isolation-level change): it runs now, and its result is
    handed back as the thread would hand it (``call_soon_threadsafe``, which the simulated
    loop counts as thread work and holds to its next turn)."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, as the thread would
            if future is not None:
                future.get_loop().call_soon_threadsafe(_set_exception, future, exc)
        else:
            if future is not None:
                future.get_loop().call_soon_threadsafe(_set_result, future, result)


class _Result(Generic[T]):
    """Awaitable, or an ``async with`` (closing a cursor it yields), like aiosqlite's."""

    def __init__(self, coro: Coroutine[Any, Any, T]) -> None:
        self._coro = coro
        self._obj: T | None = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()

    async def __aenter__(self) -> T:
        self._obj = await self._coro
        return self._obj

    async def __aexit__(self, *exc_info: object) -> None:
        if isinstance(self._obj, LoopCursor):
            await self._obj.close()


class LoopCursor:
    def __init__(self, conn: LoopConnection, cursor: sqlite3.Cursor) -> None:
        self._conn = conn
        self._cursor = cursor

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> LoopCursor:
        await self._conn.run(self._cursor.execute, sql, [] if parameters is None else parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> LoopCursor:
        await self._conn.run(self._cursor.executemany, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return await self._conn.run(self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return await self._conn.run(self._cursor.fetchmany, *(() if size is None else (size,)))

    async def fetchall(self) -> list[Any]:
        return await self._conn.run(self._cursor.fetchall)

    async def close(self) -> None:
        await self._conn.run(self._cursor.close)

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    @property
    def description(self) -> Any:
        return self._cursor.description

    async def __aenter__(self) -> LoopCursor:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


# Statements that can wait — on another connection's write lock (up to the busy timeout) or
# on the disk (a commit's fsync) — by how they begin. "ROLLBACK TO" and "RELEASE" (a
# savepoint's) are neither: they stay inside the transaction that holds the lock.
_BEGINS = ("BEGIN",)
_LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)  # white space and comments
_ENDS = ("COMMIT", "END", "ROLLBACK")
_CALLS_THAT_WAIT = frozenset({"commit", "rollback", "close", "executescript"})


def _words(sql: str, length: int = 12) -> str:
    """The statement's first ``length`` characters from its first word on, upper-cased: what
    it is, whatever comment leads (only those are upper-cased: this runs for every call)."""
    start = _LEADING.match(sql).end()  # type: ignore[union-attr]  # matches always (may be empty)
    return sql[start:start + length].upper()


class LoopConnection:
    """The gateway's SQLite connection: a statement that cannot wait runs at once on the
    event loop's thread; one that can runs on a worker thread, as all of them do with
    aiosqlite.

    With aiosqlite every call — a point read, a savepoint — is two thread switches and a
    wake-up of the loop, which cost more than most of the statements themselves (about a
    third of the gateway's CPU per SQLite payment, docs/perf/history.md). But a statement on
    the loop's thread stops every request while it runs, so only what cannot wait runs
    there: a read (``SELECT``: in WAL mode it takes no lock a writer holds) made through the
    driver's own calls — storage/statements.py's: the payment paths' point reads and
    bounded windows (keyset pages, a ``LIMIT``) — and any statement inside a transaction
    begun ``IMMEDIATE``, which holds the write lock already (the group commit's batches,
    storage/group_commit.py: whoever else writes waits for them anyway). ``BEGIN``,
    ``COMMIT``, ``ROLLBACK``, a write outside such a transaction (it may wait up to the busy
    timeout for another process's lock), a read through a SQLAlchemy cursor (the background
    jobs' counts and scans, the migrations) with the fetching of its rows, a script, and
    opening and closing the connection go to a worker thread. The price: a long statement
    of the first kind holds the loop while it runs.

    Calls on one connection keep their order, as on aiosqlite's one thread: a call made
    while one is on the connection's thread waits for it, even when the caller of that one
    was cancelled (the statement still runs to its end).
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        self._running = True
        self._connection: sqlite3.Connection | None = None  # SQLAlchemy's dialect reads it
        self._connector = connector
        self._tx = _RunAtOnce()  # SQLAlchemy's dialect queues its isolation-level change here
        self._write_locked = False
        self._away: asyncio.Future[Any] | None = None  # the call on a worker thread, if any
        self._cursors_away: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()  # last statement on a thread
        # The connection's own thread, as aiosqlite's (started at its first call, gone with
        # the connection): a shared pool could fill with calls waiting for the write lock
        # while the COMMIT that would free it queues behind them.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paygate-sqlite")

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    def _waiting_call(self, fn: Callable[..., Any]) -> bool:
        """The connection's own commit, rollback, close or script (a cursor's ``close`` is not)."""
        return getattr(fn, "__self__", None) is self._connection and getattr(fn, "__name__", "") in _CALLS_THAT_WAIT

    def _may_wait(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
        owner = getattr(fn, "__self__", None)
        if self._waiting_call(fn):
            return True
        if not args or not isinstance(args[0], str):
            # No statement starts; a fetch from a cursor whose statement ran on a thread
            # steps that statement on (its rows are found as they are fetched).
            return isinstance(owner, sqlite3.Cursor) and owner in self._cursors_away
        head = _words(args[0])
        if head.startswith(_BEGINS) or (head.startswith(_ENDS) and not head.startswith("ROLLBACK TO")):
            return True
        if self._write_locked:
            return False
        # A read through the driver's own calls (storage/statements.py: the paths' point
        # reads and bounded windows) cannot wait; a SQLAlchemy cursor's may be a background
        # job's scan or count, which would hold the loop as long as it runs.
        return not head.startswith("SELECT") or isinstance(owner, sqlite3.Cursor)

    def _after(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """The write lock's state after a call that ran on a worker thread."""
        if self._waiting_call(fn):
            self._write_locked = False
        elif args and isinstance(args[0], str):
            sql = _words(args[0], 40)  # "BEGIN IMMEDIATE TRANSACTION" and the like
            if sql.startswith(_BEGINS):
                self._write_locked = "IMMEDIATE" in sql or "EXCLUSIVE" in sql
            elif sql.startswith(_ENDS) and not sql.startswith("ROLLBACK TO"):
                self._write_locked = False

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        while self._away is not None:
            await asyncio.wait([self._away])  # in order; a cancelled waiter leaves it running
        owner = getattr(fn, "__self__", None)
        if not self._may_wait(fn, args):
            if isinstance(owner, sqlite3.Cursor) and args:
                self._cursors_away.discard(owner)
            return fn(*args, **kwargs)
        if isinstance(owner, sqlite3.Cursor) and args:
            self._cursors_away.add(owner)
        return await self._on_a_thread(fn, args, kwargs)

    async def _on_a_thread(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        away = asyncio.get_running_loop().run_in_executor(self._thread, partial(fn, *args, **kwargs))
        self._away = away
        try:
            return await asyncio.shield(away)
        finally:
            if away.done():
                self._settle(away, fn, args)
            else:  # cancelled while it runs: the next call waits for it (see run)
                away.add_done_callback(lambda done: self._settle(done, fn, args))

    def _settle(self, away: asyncio.Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        if self._away is away:
            self._away = None
        if not away.cancelled() and away.exception() is None:
            self._after(fn, args)

    async def _connect(self) -> LoopConnection:
        if self._connection is None:
            self._connection = await asyncio.get_running_loop().run_in_executor(self._thread, self._connector)
        return self

    def stop(self) -> None:
        """SQLAlchemy's forced close (a connection it gives up on): closed here and now. It
        may run inside a garbage collection (the pool finalizing a connection nobody
        returned), where handing work to an executor could wait on a lock the interrupted
        code holds. A call still running on a thread finishes first: SQLite defers the
        close until its statements are done. (A connection collected unclosed needs nothing
        of this: the ``sqlite3.Connection`` closes itself when collected.)"""
        self._running = False
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __await__(self) -> Generator[Any, None, LoopConnection]:
        return self._connect().__await__()

    async def close(self) -> None:
        if self._connection is None:
            return
        try:
            await self.run(self._conn.close)
        finally:
            self._running = False
            self._connection = None
            self._thread.shutdown(wait=False)

    def cursor(self) -> _Result[LoopCursor]:
        return _Result(self._cursor())

    async def _cursor(self) -> LoopCursor:
        return LoopCursor(self, await self.run(self._conn.cursor))

    async def commit(self) -> None:
        await self.run(self._conn.commit)

    async def rollback(self) -> None:
        await self.run(self._conn.rollback)

    def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> _Result[LoopCursor]:
        return _Result(self._on_cursor("execute", sql, [] if parameters is None else parameters))

    def executescript(self, script: str) -> _Result[LoopCursor]:
        return _Result(self._on_cursor("executescript", script))

    async def _on_cursor(self, method: str, *args: Any) -> LoopCursor:
        return LoopCursor(self, await self.run(getattr(self._conn, method), *args))

    def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> _Result[list[Any]]:
        return _Result(self.run(self._fetchall, sql, [] if parameters is None else parameters))

    def _fetchall(self, sql: str, parameters: Any) -> list[Any]:
        return self._conn.execute(sql, parameters).fetchall()

    async def create_function(self, name: str, num_params: int, func: Callable[..., Any],
                              deterministic: bool = False) -> None:
        await self.run(self._conn.create_function, name, num_params, func, deterministic=deterministic)

    async def set_trace_callback(self, trace: Callable[[str], object] | None) -> None:
        """As aiosqlite's: every statement SQLite runs, trigger steps included, is passed
        to ``trace`` (docs/perf/count.py counts them)."""
        await self.run(self._conn.set_trace_callback, trace)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None) -> None:
        self._conn.isolation_level = value

    @property
    def row_factory(self) -> Any:
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._conn.row_factory = factory

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes


def loop_creator(*args: Any, **kwargs: Any) -> Callable[[], Awaitable[LoopConnection]]:
    """SQLAlchemy's ``async_creator`` for the gateway's SQLite database: ``args`` and
    ``kwargs`` are ``sqlite3.connect``'s (the URL's, by its dialect). A connection is used
    from more than one thread, never from two at once (see :class:`LoopConnection`)."""
    connector = partial(sqlite3.connect, *args, **{**kwargs, "check_same_thread": False})

    async def connect() -> LoopConnection:
        connection = LoopConnection(connector)
        await connection
        return connection
    return connect
