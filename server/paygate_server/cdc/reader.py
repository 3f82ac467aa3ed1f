"""Commit-safe reading of ``change_log``: nothing skipped, per-intent order kept.

The polling-outbox trap: ids (and ``txid``) are taken *before* commit, so on PostgreSQL a row
with a smaller id can become visible after one with a larger id. A reader that remembers
"the highest id seen" skips it forever.

PostgreSQL — windows of transaction ids. ``X`` is the oldest transaction still running (as
``pg_snapshot_xmin(pg_current_snapshot())``, but ignoring other databases' transactions, see
``_OLDEST_RUNNING``): every transaction with ``txid < X`` has finished, and
every transaction that will ever write a row from now on has ``txid >= X``. So the set of
rows with ``H <= txid < X`` is final: the reader delivers it completely (by id, in pages)
and then moves its horizon ``H`` to ``X``. Nothing committed is skipped, whatever the
commit order.

That alone could still deliver one intent's changes backwards. ``intent_seq`` is assigned
under the intent's row lock, so change ``k+1`` is written only after change ``k`` committed —
but its transaction may be *older* (a smaller txid: it began, wrote something else, then
waited for the lock). With an unrelated transaction still running between the two txids,
``k+1`` falls inside the window and ``k`` outside. So before a window is used, its end is
lowered until no change inside has its predecessor (``intent_seq - 1``) outside:
``X := min(txid of such changes)``, repeated until none is left. By induction no
predecessor is ever left behind a window, and within a window ids follow ``intent_seq``
(change ``k+1`` is inserted after ``k`` committed), so delivering by id keeps per-intent order.

SQLite has one writer at a time (``BEGIN IMMEDIATE``): ids are assigned in commit order,
and "everything after the last id" is exact.
"""
from __future__ import annotations

from typing import Protocol

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.cdc.changes import Change, Position
from paygate_server.db.schema import change_log

__all__ = ["ChangeReader", "PostgresReader", "SqliteReader", "reader_for", "safe_window_end"]

_BLOCKED = text("""
SELECT min(c.txid) FROM change_log c
JOIN change_log p ON p.intent_id = c.intent_id AND p.intent_seq = c.intent_seq - 1
WHERE c.txid >= :h AND c.txid < :x AND p.txid >= :x
""")


class ChangeReader(Protocol):
    async def next_batch(self, conn: AsyncConnection, pos: Position, limit: int) -> tuple[list[Change], Position]:
        """Up to ``limit`` changes after ``pos``, in delivery order, and the position after them."""
        ...


# The oldest transaction still running *in this database* (else the next txid). A snapshot's
# in-progress list spans the whole cluster, and a long transaction in another database can
# never write our change_log: an xid is skipped only when pg_stat_activity shows it belongs
# to a backend of another database (a backend never changes database); any xid it cannot
# place — a race, a prepared transaction, stats hidden by permissions — counts as ours.
_OLDEST_RUNNING = text("""
WITH s AS (SELECT pg_current_snapshot() AS snap)
SELECT least(
  pg_snapshot_xmax(snap)::text::bigint,
  (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap) AS x
    WHERE NOT EXISTS (
      SELECT 1 FROM pg_stat_activity a
      WHERE a.backend_xid IS NOT NULL
        AND a.backend_xid::text::bigint = x::text::bigint % 4294967296
        AND a.datname IS DISTINCT FROM current_database())))
FROM s
""")


async def oldest_running(conn: AsyncConnection) -> int:
    """Every transaction of this database with a smaller txid has finished."""
    return int((await conn.execute(_OLDEST_RUNNING)).scalar_one())


async def safe_window_end(conn: AsyncConnection, horizon: int) -> int:
    """The end of the next window: finished transactions only, no intent split across it."""
    x = await oldest_running(conn)
    while x > horizon:
        blocked = (await conn.execute(_BLOCKED, {"h": horizon, "x": x})).scalar()
        if blocked is None:
            break
        x = blocked
    return max(x, horizon)


class PostgresReader:
    async def next_batch(self, conn: AsyncConnection, pos: Position, limit: int) -> tuple[list[Change], Position]:
        if pos.window_end is None:
            end = await safe_window_end(conn, pos.horizon)
            if end <= pos.horizon:
                return [], pos
            first = (await conn.execute(
                select(func.min(change_log.c.id))
                .where(change_log.c.txid >= pos.horizon, change_log.c.txid < end))).scalar()
            if first is None:
                return [], Position(end, None, 0)  # an empty window: just move on
            pos = Position(pos.horizon, end, first - 1)
        assert pos.window_end is not None
        rows = (await conn.execute(
            select(change_log)
            .where(change_log.c.txid >= pos.horizon, change_log.c.txid < pos.window_end,
                   change_log.c.id > pos.last_id)
            .order_by(change_log.c.id).limit(limit))).all()
        changes = [Change.from_row(r, Position(pos.horizon, pos.window_end, r.id)) for r in rows]
        if len(rows) < limit:  # the window is exhausted
            closed = Position(pos.window_end, None, 0)
            if changes:
                changes[-1] = _with_position(changes[-1], closed)
            return changes, closed
        return changes, changes[-1].position


class SqliteReader:
    async def next_batch(self, conn: AsyncConnection, pos: Position, limit: int) -> tuple[list[Change], Position]:
        rows = (await conn.execute(
            select(change_log).where(change_log.c.id > pos.last_id).order_by(change_log.c.id).limit(limit))).all()
        changes = [Change.from_row(r, Position(0, None, r.id)) for r in rows]
        return changes, (changes[-1].position if changes else pos)


def _with_position(change: Change, position: Position) -> Change:
    from dataclasses import replace

    return replace(change, position=position)


def reader_for(dialect: str) -> ChangeReader:
    return PostgresReader() if dialect == "postgresql" else SqliteReader()
