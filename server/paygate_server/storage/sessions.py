"""Work that needs a PostgreSQL session of its own, and the check that it has one.

The relay's leases hold a session advisory lock for as long as they run
(:mod:`.relay_leases`) and the change listener keeps a ``LISTEN`` (:mod:`.notifications`).
Both rely on the server connection staying theirs between statements. Through a
transaction-mode pooler (PgBouncer's ``pool_mode = transaction``) it does not: a lock taken
by one client stays on a server connection that the pooler then hands to another client —
whose ``pg_try_advisory_lock`` is granted too (the lock is re-entrant within a session), so
two relays both deliver — and a ``LISTEN`` ends up on a server connection nobody reads.

So a session-bound connection must reach PostgreSQL directly. A pooler shows: the process
id a connection announces at start-up (its cancel key, ``BackendKeyData``) is the backend's
own on a direct connection, and a pooler's invention through one (PgBouncer's is random,
since the backend changes under it). A TCP proxy passes the server's through, and is fine.
"""
from __future__ import annotations

from typing import Any

from paygate_server.storage.engine import Database

__all__ = ["SessionNotBound", "announced_pid", "check_session_connections", "session_url_of"]

_BACKEND = "SELECT pg_backend_pid() AS pid, current_database() AS db, pg_postmaster_start_time() AS started"


class SessionNotBound(RuntimeError):
    """A session-bound connection (a relay lease, the change listener) does not reach
    PostgreSQL directly: the message says which URL, and what to set."""


def announced_pid(driver: Any) -> int:
    """The backend process id an asyncpg connection was given at start-up."""
    return int(driver.get_server_pid())


def session_url_of(db: Database) -> str:
    return "the session URL" if db.behind_transaction_pooler else "the database URL"


async def _backend(engine: Any) -> tuple[bool, str, Any]:
    """Over one fresh connection of ``engine``: is it direct (its announced process id is
    its backend's), and which server and database it reaches."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        row = (await conn.exec_driver_sql(_BACKEND)).mappings().one()
        return announced_pid(raw.driver_connection) == row["pid"], row["db"], row["started"]


async def check_session_connections(db: Database) -> None:
    """Refuse (:class:`SessionNotBound`) a deployment whose relay leases and change listener
    would run through a pooler, or whose session URL reaches another database than the
    pool's. SQLite has no sessions to lose: nothing to check."""
    if db.is_sqlite:
        return
    direct, name, started = await _backend(db.session_engine)
    if not direct:
        raise SessionNotBound(f"{session_url_of(db)} reaches PostgreSQL through a connection pooler; the relay's "
                              "leases and the change listener need a connection of their own to PostgreSQL")
    if db.behind_transaction_pooler:
        _, pooled_name, pooled_started = await _backend(db.engine)
        if (pooled_name, pooled_started) != (name, started):
            raise SessionNotBound("the session URL reaches another database or server than the database URL: "
                                  "the relay would read another change log than the gateway writes")
