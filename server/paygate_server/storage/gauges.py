"""The counts behind ``/metrics``' database gauges (read on scrape, cached by the caller)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text

from paygate_server.clock import now_us
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import payment_intents, reconcile_queue

__all__ = ["PaymentCounts", "read_late_outcomes_open", "read_payment_counts", "read_webhook_backlog"]

_WEBHOOK_BACKLOG = text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
# Served by ix_late_outcomes_open (handled_at first); the same statement on both databases.
_LATE_OUTCOMES_OPEN = text("SELECT count(*) FROM late_outcomes WHERE handled_at IS NULL")


@dataclass(frozen=True, slots=True)
class PaymentCounts:
    intents_by_status: dict[str, int]  # statuses with no intent are absent
    reconcile_backlog: int  # reconciler queue rows
    reconcile_overdue: int  # of which the next check is due now or past


async def read_payment_counts(db: Database) -> PaymentCounts:
    """One read transaction, so the three counts are of the same moment."""
    async with db.read() as conn:
        rows = (await conn.execute(
            select(payment_intents.c.status, func.count()).group_by(payment_intents.c.status))).all()
        backlog = (await conn.execute(select(func.count()).select_from(reconcile_queue))).scalar_one()
        overdue = (await conn.execute(select(func.count()).select_from(reconcile_queue)
                                      .where(reconcile_queue.c.due_at <= now_us()))).scalar_one()
    return PaymentCounts({str(status): int(n) for status, n in rows}, int(backlog), int(overdue))


async def read_webhook_backlog(db: Database) -> int:
    """Pending webhook deliveries. A failed read raises: the table is part of every schema
    the gateway runs on (migration 0003), so a failure is an outage, and /metrics must show
    it as one rather than as an empty backlog."""
    async with db.read() as conn:
        return int((await conn.execute(_WEBHOOK_BACKLOG)).scalar_one())


async def read_late_outcomes_open(db: Database) -> int:
    """Late outcomes no operator has marked handled (storage/late_outcomes.py). Raises on a
    failed read, as :func:`read_webhook_backlog` does: the table is in every schema from
    migration 0016 on, and a 0 during an outage would read as "nothing to look at"."""
    async with db.read() as conn:
        return int((await conn.execute(_LATE_OUTCOMES_OPEN)).scalar_one())
