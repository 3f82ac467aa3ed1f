"""The database's change signal: the intent id of every committed change, as it commits.

On PostgreSQL the capture trigger issues ``NOTIFY paygate_changes, '<intent id>'``
(:mod:`.capture`), delivered at commit to a ``LISTEN``ing connection of its own, outside
the pool, straight to PostgreSQL (the session URL's behind a transaction pooler:
:mod:`.sessions`). On SQLite (one host) the change log's tail is polled by id: SQLite has
one writer at a time, so ids become visible in commit order and a high-water mark skips
nothing.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from paygate_server.storage.capture import NOTIFY_CHANNEL
from paygate_server.storage.engine import Database
from paygate_server.storage.sessions import SessionNotBound, announced_pid, session_url_of
from paygate_server.storage.statements import Sql, fetch_all, fetch_value

__all__ = ["follow_changes"]

# SQLite: the change log's tail, polled (50 times a second by default, so kept cheap).
_LAST_CHANGE = Sql("SELECT coalesce(max(id), 0) AS last FROM change_log")
_BACKEND_PID = "SELECT pg_backend_pid()"
_CHANGES_AFTER = Sql("SELECT id, intent_id FROM change_log WHERE id > :after ORDER BY id LIMIT 1000")


async def follow_changes(db: Database, on_change: Callable[[str], None], on_ready: Callable[[], None], *,
                         poll_interval_s: float) -> None:
    """Call ``on_change(intent_id)`` for every change committed once ``on_ready()`` was
    called, until cancelled. Raises when the database connection fails (the caller
    reconnects: changes committed meanwhile are not replayed)."""
    if db.is_sqlite:
        await _tail_sqlite(db, on_change, on_ready, poll_interval_s)
    else:
        await _listen_postgres(db, on_change, on_ready)


async def _tail_sqlite(db: Database, on_change: Callable[[str], None], on_ready: Callable[[], None],
                       poll_interval_s: float) -> None:
    async with db.read() as conn:
        last = await fetch_value(conn, _LAST_CHANGE)
    on_ready()
    while True:
        await asyncio.sleep(poll_interval_s)
        async with db.read_one() as conn:
            rows = await fetch_all(conn, _CHANGES_AFTER, after=last)
        for row in rows:
            on_change(row["intent_id"])
        if rows:
            last = rows[-1]["id"]


async def _listen_postgres(db: Database, on_change: Callable[[str], None], on_ready: Callable[[], None]) -> None:
    import asyncpg  # only with the postgres extra

    url = make_url(db.session_url)
    conn: Any = await asyncpg.connect(user=url.username, password=url.password, host=url.host, port=url.port,
                                      database=url.database)
    try:
        # Through a transaction pooler the LISTEN would stay on a server connection that
        # nobody reads (:mod:`.sessions`): refused, rather than never waking anyone.
        if announced_pid(conn) != await conn.fetchval(_BACKEND_PID):
            raise SessionNotBound(f"the change listener: {session_url_of(db)} reaches PostgreSQL through a "
                                  "connection pooler, where a LISTEN is not the session's own")
        await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _pid, _ch, payload: on_change(payload))
        on_ready()
        while True:
            await asyncio.sleep(5)
            await conn.execute("SELECT 1")  # notice a dead connection promptly
    finally:
        await conn.close()
