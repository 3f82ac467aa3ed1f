"""The database handle: one async engine per process, SQLite or PostgreSQL.

``Database.write()`` is one transaction per state change. On SQLite the writers of one
process share group commits (see :mod:`.group_commit`: each write is a savepoint on the one
write connection, one fsync per batch), and processes are serialized by ``BEGIN IMMEDIATE``
plus a busy timeout, so concurrent writers queue instead of failing with "database is
locked".
``Database.read()`` never takes the write lock.
"""
from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from paygate_server.private_files import private_dir, private_file
from paygate_server.storage.availability import StaleConnections, opened_before_dead
from paygate_server.storage.group_commit import GroupCommitter
from paygate_server.storage.loop_sqlite import loop_creator
from paygate_server.storage.statements import Autocommit
from paygate_server.storage.urls import normalize_database_url

__all__ = ["Database", "create_database"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
_SESSION_POOL_SIZE = 4


def _unnamed() -> str:
    """SQLAlchemy's name for the statement it prepares: none (see _asyncpg_timeouts)."""
    return ""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level: we issue BEGIN ourselves (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Database:
    def __init__(self, url: str, *, pool_size: int = 20, max_overflow: int = 0,
                 pool_timeout_s: float = 10.0, connect_timeout_s: float | None = None,
                 command_timeout_s: float | None = None,
                 idle_in_transaction_timeout_s: float | None = None,
                 async_creator: Callable[[], Awaitable[Any]] | None = None,
                 session_url: str | None = None) -> None:
        self.url = normalize_database_url(url)
        self.is_sqlite = make_url(self.url).get_backend_name() == "sqlite"
        if async_creator is not None and not self.is_sqlite:
            raise ValueError("async_creator is for SQLite's driver connections")
        if session_url is not None and self.is_sqlite:
            raise ValueError("a session URL is for PostgreSQL behind a transaction pooler")
        # session_url given: ``url`` is a transaction-mode pooler (PgBouncer), where a
        # session's state does not outlive a transaction, and ``session_url`` reaches
        # PostgreSQL directly for the work that needs a session of its own — the relay's
        # leases (a session advisory lock) and the change listener (LISTEN). Without it
        # both go to ``url``, as everything does (docs/operations.md, "Behind PgBouncer").
        self.session_url = normalize_database_url(session_url) if session_url else self.url
        self.behind_transaction_pooler = session_url is not None
        self._group: GroupCommitter | None = None
        # Up to a quarter of the pool stays checked out between single statements
        # (autocommit()): a pool checkout and check-in cost more than the statement's own
        # work on the driver (two greenlet hops, the pool's events, its reset), about 45 µs
        # of CPU a statement, and a payment runs about seven (docs/performance.md,
        # "Connections kept between statements"). The other three quarters are always the
        # pool's: a kept connection is idle only until the next statement, which on a busy
        # gateway is microseconds, but nothing hands it to a transaction waiting on the pool.
        self._kept: list[Autocommit] = []
        self._keep = pool_size // 4
        if self.is_sqlite:
            parsed = make_url(self.url)
            _private_sqlite_files(parsed.database)
            # Driver connections (SQLAlchemy's async_creator), opened with what the URL asks
            # of sqlite3.connect: what cannot wait runs on the loop's thread and the rest on
            # the connection's own thread (storage/loop_sqlite.py, LoopConnection). The
            # simulation uses these too; a caller may pass others (tests: aiosqlite's).
            if async_creator is None:
                connect_args, connect_kwargs = parsed.get_dialect()().create_connect_args(parsed)
                async_creator = loop_creator(*connect_args, **connect_kwargs)
            # No rollback on every check-in (a hop to a worker thread): _sqlite_reset rolls
            # back only a connection that is in a transaction.
            self.engine = create_async_engine(self.url, pool_size=pool_size, max_overflow=pool_size,
                                              pool_timeout=pool_timeout_s, hide_parameters=True,
                                              pool_reset_on_return=None, async_creator=async_creator)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "reset", _sqlite_reset)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            self._read_engine: AsyncEngine = self.engine
            # Writes take the database lock up front: a deferred transaction that later
            # upgrades to a write can fail with SQLITE_BUSY without waiting.
            self._group = GroupCommitter(self.engine.execution_options(sqlite_begin="IMMEDIATE"))
        else:
            self.engine = create_async_engine(
                # A fixed ceiling, no overflow by default: the pool opens connections as
                # they are first needed and keeps them, and past the ceiling a request
                # waits for one. Overflow connections are closed on return, so a pool that
                # overflows under steady load opens and closes connections all the time,
                # and each new one costs PostgreSQL a backend fork, its catalog caches and
                # every prepared statement again (docs/performance.md, fourth pass).
                # No pre-ping (a round trip per checkout): a connection the server dropped
                # is invalidated when it fails, with every older one (SQLAlchemy's disconnect
                # handling, and StaleConnections for the statements run on the driver), so
                # the pool reconnects by itself after an outage. Past pool_timeout_s without a
                # free connection a request gets 503 (storage/availability.py).
                # hide_parameters: statement values never appear in an error's text, so never
                # in a log.
                # connect_timeout_s / command_timeout_s (asyncpg's own ``timeout`` and
                # ``command_timeout``): a server that stops answering — blackholed, half-open —
                # fails a connect after that long instead of never, and a statement after at
                # most twice that (asyncpg then sends a cancel request, bounded by the same
                # timeout, and closes a connection it could not cancel on: never reused);
                # idle_in_transaction_timeout_s has the server end a transaction whose client
                # went silent, and its locks with it (docs/operations.md, "Database timeouts").
                self.url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=False,
                pool_timeout=pool_timeout_s, hide_parameters=True,
                connect_args=_asyncpg_timeouts(connect_timeout_s, command_timeout_s,
                                               idle_in_transaction_timeout_s, self.behind_transaction_pooler),
            )
            StaleConnections(self.engine.sync_engine)
            self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # The engine of the relay's leases and the change listener's URL: the pool's own
        # unless a session URL was given. A handful of connections (one per relay consumer
        # held for as long as it runs, a standby's for one try at a time); past them an
        # overflow connection, closed on return.
        self.session_engine = self.engine
        if self.behind_transaction_pooler:
            self.session_engine = create_async_engine(
                self.session_url, pool_size=_SESSION_POOL_SIZE, max_overflow=_SESSION_POOL_SIZE,
                pool_pre_ping=False, pool_timeout=pool_timeout_s, hide_parameters=True,
                # The same statements as the pool's: a session URL given the pooler's address
                # by mistake then meets the leases' and the listener's refusal
                # (storage/sessions.py), not another client's prepared statement.
                connect_args=_asyncpg_timeouts(connect_timeout_s, command_timeout_s,
                                               idle_in_transaction_timeout_s, transaction_pooler=True))
            StaleConnections(self.session_engine.sync_engine)

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction: on SQLite a group-commit unit, on PostgreSQL the engine's
        ``begin()``. Handed back as it is, not wrapped in a generator of our own (SQLite
        runs several a payment: docs/perf/history.md, "Starlette's inner layers")."""
        return self._group.unit() if self._group is not None else self.engine.begin()

    # write_one, read_one and autocommit are plain calls returning the block: a payment runs
    # ~17 of them, and an @asynccontextmanager (nested, for the first two) costs a generator,
    # asyncio's async-generator hooks and ~10 Python calls each (docs/perf/history.md,
    # "Autocommit blocks without generators").

    def write_one(self) -> AbstractAsyncContextManager[AsyncConnection | Autocommit]:
        """For a single, self-contained write statement (run with :mod:`.statements`): on
        PostgreSQL an :class:`Autocommit` driver connection (one round trip instead of
        BEGIN + statement + COMMIT); on SQLite a group-commit unit like any write."""
        return self._group.unit() if self._group is not None else _AutocommitBlock(self)

    def read_one(self) -> AbstractAsyncContextManager[Autocommit]:
        """For a single read statement (run with :mod:`.statements`): an
        :class:`Autocommit` driver connection. One statement is its own consistent
        snapshot, so it needs no read transaction."""
        return _AutocommitBlock(self)

    def autocommit(self) -> AbstractAsyncContextManager[Autocommit]:
        """A pooled driver connection with no transaction: every statement commits on its
        own. On SQLite, for reads only (writes go through :meth:`write`'s group commit).

        The connection of a block that ended well is kept for the next one (most recent
        first); one whose block raised, a cancellation included, or that was found dead
        goes back to the pool, which resets or replaces it."""
        return _AutocommitBlock(self)

    async def _lend_connection(self) -> Autocommit:
        conn = await self._kept_connection()
        if conn is None:
            conn = Autocommit(self.engine.dialect, await self.engine.raw_connection())
        return conn

    async def _take_back_connection(self, conn: Autocommit, failed: bool) -> None:
        if not failed and conn.is_valid and len(self._kept) < self._keep:
            self._kept.append(conn)
        else:
            await conn.close()

    async def _kept_connection(self) -> Autocommit | None:
        while self._kept:
            conn = self._kept.pop()
            if not opened_before_dead(conn.info):
                return conn
            # The pool would refuse it at checkout (StaleConnections): replaced the same way.
            # Popped already: handed back even if this task is cancelled meanwhile.
            try:
                await conn.invalidate()
            finally:
                await conn.close()
        return None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        if self.is_sqlite:
            # A deferred read transaction: a consistent snapshot, no write lock.
            async with self._read_engine.begin() as conn:
                yield conn
        else:
            async with self._read_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside the write discipline (migrations, DDL, tooling)."""
        async with self.engine.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        kept, self._kept, self._keep = self._kept, [], 0
        for conn in kept:
            await conn.close()
        if self._group is not None:
            await self._group.close()
        await self.engine.dispose()
        if self.session_engine is not self.engine:
            await self.session_engine.dispose()


def _private_sqlite_files(database: str | None) -> None:
    """The database file is made 0600 before SQLite opens it: SQLite creates its ``-wal``
    and ``-shm`` with the main file's mode. Files of an older install are tightened."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent, tighten=False)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists() and companion.stat().st_uid == os.getuid():
            os.chmod(companion, 0o600)


def _asyncpg_timeouts(connect_s: float | None, command_s: float | None,
                     idle_in_transaction_s: float | None, transaction_pooler: bool = False) -> dict[str, Any]:
    """asyncpg's ``connect()`` arguments for the timeouts given (None: the driver's default),
    and for a transaction-mode pooler (``transaction_pooler``) the prepared statements it
    can take."""
    args: dict[str, Any] = {}
    if connect_s:
        args["timeout"] = connect_s
    if command_s:
        args["command_timeout"] = command_s
    if transaction_pooler:
        # Behind a transaction pooler consecutive transactions of one connection run on
        # whichever server connection is free, so a prepared statement kept by name (asyncpg's
        # cache, SQLAlchemy's) is missing there — or another client's of the same name is.
        # Unnamed statements only: asyncpg parses, describes and binds one without a Sync in
        # between, so the pooler keeps the statement on one server connection, and re-parses
        # it at every execution. PgBouncer 1.21+ could keep named ones (max_prepared_statements).
        # No start-up parameters either: PgBouncer refuses a connection that sends one it does
        # not know, idle_in_transaction_session_timeout among them (its own
        # idle_transaction_timeout does that job there).
        args.update(statement_cache_size=0, prepared_statement_cache_size=0,
                    prepared_statement_name_func=_unnamed)
        return args
    if idle_in_transaction_s:
        # A session setting in the start-up packet: no server configuration involved.
        args["server_settings"] = {"idle_in_transaction_session_timeout": str(max(1, round(idle_in_transaction_s * 1000)))}
    return args


def _sqlite_reset(dbapi_connection: Any, _entry: ConnectionPoolEntry, state: PoolResetState) -> None:
    """The pool's reset on check-in, SQLite: roll back only a connection the driver says is
    in a transaction. Most come back with none (SQLAlchemy ended theirs, an
    :class:`Autocommit` never opened one), and a ROLLBACK costs a hop to a worker thread."""
    if (state.asyncio_safe and not state.transaction_was_reset
            and dbapi_connection.driver_connection.in_transaction):
        dbapi_connection.rollback()


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_database(url: str, **kw: Any) -> Database:
    return Database(url, **kw)


class _AutocommitBlock:
    """One ``async with db.autocommit()``: the connection checked out on entry, kept or
    given back on exit (:meth:`Database.autocommit`)."""

    __slots__ = ("_db", "_conn")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: Autocommit | None = None

    async def __aenter__(self) -> Autocommit:
        self._conn = await self._db._lend_connection()
        return self._conn

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._conn is not None
        await self._db._take_back_connection(self._conn, failed=exc_type is not None)
