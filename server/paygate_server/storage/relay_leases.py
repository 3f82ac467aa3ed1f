"""One relay per consumer at a time, however many workers and hosts run one.

PostgreSQL: a session advisory lock on a connection the relay keeps for as long as it runs,
and every read and offset write of that consumer goes through the same connection — one
that reaches PostgreSQL directly (the session URL's, behind a transaction pooler: see
:mod:`.sessions`; one through a pooler is refused). If the
process dies (even SIGKILL) or the connection drops, the server releases the lock at once,
and the old holder cannot write another offset: its connection is gone. SQLite (one host):
``flock`` on a file next to the database; the kernel releases it when the process dies.

Reads go through a connection the lease keeps (on PostgreSQL the lock's own), so a read
costs no pool check-out and no transaction of its own: the reader sends single statements
straight to the driver (see :mod:`.change_log`). The consumer's offset is written under the
lease too (:mod:`.relay_offsets`): on PostgreSQL through the lock's connection, so only the
holder can move it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.storage.change_log import Batch, reader_for
from paygate_server.storage.changes import Position
from paygate_server.storage.engine import Database
from paygate_server.storage.relay_offsets import ensure_offset, save_offset
from paygate_server.storage.sessions import SessionNotBound, announced_pid, session_url_of

__all__ = ["ConsumerLease", "LeaseLost"]

# The advisory lock's first key: "the paygate relay" (the second is the consumer's name).
_LOCK_CLASS = 7_342_001
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:c, hashtext(:n)) AS got, pg_backend_pid() AS pid")
_UNLOCK = text("SELECT pg_advisory_unlock(:c, hashtext(:n))")


class LeaseLost(RuntimeError):
    """The lease is not (or no longer) held."""


class ConsumerLease:
    def __init__(self, db: Database, consumer: str) -> None:
        self._db = db
        self.consumer = consumer
        # The connection kept while the lease is held: on PostgreSQL the one holding the lock,
        # on SQLite one for reads (the lock is the flock on _fd).
        self._conn: AsyncConnection | None = None
        self._fd: int | None = None
        self._reader = reader_for(db)

    @property
    def held(self) -> bool:
        return self._conn is not None

    async def acquire(self) -> bool:
        if self.held:
            return True
        if self._db.is_sqlite and not self._acquire_file():
            return False
        try:
            conn = await self._db.session_engine.connect()
        except BaseException:
            await self.release()
            raise
        if not self._db.is_sqlite:
            try:
                got = await self._try_lock(conn)
            except BaseException:
                await conn.close()
                raise
            if not got:
                await conn.close()
                return False
        self._conn = conn
        return True

    async def _try_lock(self, conn: AsyncConnection) -> bool:
        """The advisory lock, if free, on a connection that reaches PostgreSQL directly.

        Through a pooler the lock would stay on a server connection the pooler hands to
        other clients, and another relay's try would be granted there too (re-entrant):
        refused with :class:`SessionNotBound`, the lock undone in the same transaction (so
        on the server connection that took it) before anything believes it held."""
        lock = {"c": _LOCK_CLASS, "n": self.consumer}
        row = (await conn.execute(_TRY_LOCK, lock)).one()
        raw = await conn.get_raw_connection()
        if announced_pid(raw.driver_connection) != row.pid:
            if row.got:
                await conn.execute(_UNLOCK, lock)
            await conn.commit()
            raise SessionNotBound(f"the lease of relay consumer {self.consumer}: {session_url_of(self._db)} "
                                  "reaches PostgreSQL through a connection pooler, where a session advisory lock "
                                  "is not the session's own")
        await conn.commit()
        return bool(row.got)

    def _lock_path(self) -> Path:
        database = make_url(self._db.url).database or "paygate.db"
        return Path(f"{database}.relay-{self.consumer}.lock")

    def _acquire_file(self) -> bool:
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._db.is_sqlite:
            with contextlib.suppress(Exception):
                await conn.close()
        elif conn is not None:
            try:
                await conn.rollback()
                await conn.execute(_UNLOCK, {"c": _LOCK_CLASS, "n": self.consumer})
                await conn.commit()
                await conn.close()
            except Exception:
                # A broken connection: the server has released the lock with it. Never put
                # a connection that may still hold the lock back into the pool.
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def _held_conn(self) -> AsyncConnection:
        if self._conn is None:
            raise LeaseLost(f"the lease of consumer {self.consumer} is not held")
        return self._conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """The lease's read connection. Statements sent through SQLAlchemy run in one
        transaction, ended here; the reader's driver-level statements need none."""
        conn = self._held_conn()
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.rollback()
            raise
        await conn.commit()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; on PostgreSQL on the lock's own connection (fenced)."""
        conn = self._held_conn()
        if self._db.is_sqlite:
            async with self._db.write() as tx:
                yield tx
            return
        await conn.commit()  # end any implicit read transaction
        async with conn.begin():
            yield conn

    async def read_changes(self, pos: Position, limit: int) -> Batch:
        """Up to ``limit`` changes after ``pos``, commit-safely (see :mod:`.change_log`)."""
        async with self.read() as conn:
            return await self._reader.read(conn, pos, limit)

    async def start_offset(self) -> Position:
        """The consumer's durable position (a new consumer's is recorded as the start)."""
        async with self.write() as conn:
            return await ensure_offset(conn, self.consumer)

    async def save_offset(self, pos: Position, delivered: int, tx: AsyncConnection | None = None) -> None:
        """Record the consumer at ``pos``: inside ``tx`` (a transaction of :meth:`write`,
        holding what the consumer delivered) or in a transaction of its own."""
        if tx is not None:
            await save_offset(tx, self.consumer, pos, delivered)
            return
        async with self.write() as conn:
            await save_offset(conn, self.consumer, pos, delivered)
