"""Each relay consumer's durable position in the change log (``cdc_offsets``).

The relay writes an offset only under the consumer's lease, through the lease's own
transaction (:meth:`.relay_leases.ConsumerLease.write`), so a relay that lost its lease
cannot move it. Reading one (the audit) needs no lease.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.storage.changes import START, Position
from paygate_server.storage.dialect import insert_ignore
from paygate_server.storage.engine import Database
from paygate_server.storage.schema_history import cdc_offsets
from paygate_server.storage.statements import Sql, execute

__all__ = ["OffsetGone", "load_offset", "ensure_offset", "save_offset", "read_offset"]


class OffsetGone(RuntimeError):
    """The consumer's offset row is not there to move (deleted while its relay ran)."""


async def load_offset(conn: AsyncConnection, consumer: str) -> Position:
    """The consumer's position; the start of the log when it has none yet."""
    row = (await conn.execute(select(cdc_offsets).where(cdc_offsets.c.consumer == consumer))).first()
    if row is None:
        return START
    return Position(row.horizon, row.window_end, row.last_id)


async def ensure_offset(conn: AsyncConnection, consumer: str) -> Position:
    """The consumer's position, recording the start of the log for a new consumer."""
    await insert_ignore(conn, cdc_offsets, {"consumer": consumer, "horizon": 0, "window_end": None,
                                            "last_id": 0, "delivered": 0, "updated_at": now_us()})
    return await load_offset(conn, consumer)


# Once per delivered batch: straight to the driver (storage/statements.py).
_SAVE_OFFSET = Sql("""
UPDATE cdc_offsets SET horizon = :horizon, window_end = :window_end, last_id = :last_id,
  delivered = delivered + :delivered, updated_at = :now
WHERE consumer = :consumer
""")


async def save_offset(conn: AsyncConnection, consumer: str, pos: Position, delivered: int) -> None:
    """Move the consumer to ``pos``, counting ``delivered`` more changes."""
    moved = await execute(conn, _SAVE_OFFSET, horizon=pos.horizon, window_end=pos.window_end, last_id=pos.last_id,
                          delivered=delivered, now=now_us(), consumer=consumer)
    if moved != 1:
        # Deleted under a running relay: recording nothing would deliver on as if recorded,
        # while pruning, which no longer sees the consumer, stops waiting for it.
        raise OffsetGone(f"the offset of relay consumer {consumer} is gone (deleted while its relay ran);"
                         " the relay starts it again")


async def read_offset(db: Database, consumer: str) -> Position:
    """The consumer's position, read in a transaction of its own."""
    async with db.read() as conn:
        return await load_offset(conn, consumer)
