"""The console's reconciliation queue (SPEC §12 "Reconciliation"): operations at the
processor whose outcome the gateway does not know, oldest first.

The rows are the reconciler's own queue (``reconcile_queue``, storage/reconcile_queue.py): one per
charge, authorization, capture, void or refund not settled yet. Shown: every ``unknown``
one, and the ``pending`` ones older than the safety window (a request still waiting on the
processor is not stuck yet). ``last_result`` is what the reconciler's last look-up at the
processor answered — the queue row keeps it, written in the same statement that moves the
next check (``_MOVE_CHECK``); None until the first check.

Pages are by keyset on ``(created_at, kind, object_id)`` of the queue row, oldest first.

Exceptions::

    ValueError
     └── InvalidSearch   (console_search) a limit or cursor the queue cannot take
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import and_, literal, or_, select, union_all

from paygate_server.clock import now_us
from paygate_server.storage.console_search import MAX_PAGE_SIZE, InvalidSearch
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import reconcile_queue, refunds, transactions

__all__ = ["StuckOperation", "ReconciliationPage", "reconciliation_queue"]

_CURSOR = re.compile(r"([0-9]{1,19})\.([a-z]{1,16})\.([A-Za-z0-9_]{1,64})")
_q = reconcile_queue.c


@dataclass(frozen=True, slots=True)
class StuckOperation:
    kind: str  # the queue's kind: charge (an authorization too), capture, void, refund
    object_id: str  # the attempt's (txn_…) or refund's (re_…) id
    intent_id: str
    merchant_id: str
    status: str  # unknown | pending
    connector: str  # the route: pa_… or the default processor's name
    reference: str  # ours, as the processor knows it
    amount: int
    currency: str
    created_at: int  # when the operation began (microseconds)
    age_us: int  # now - created_at
    checks: int  # look-ups made so far
    next_check_at: int
    last_result: str | None  # the processor's last answer to a look-up


@dataclass(frozen=True, slots=True)
class ReconciliationPage:
    rows: list[StuckOperation]
    next_cursor: str | None


def _decode(cursor: str) -> tuple[int, str, str]:
    match = _CURSOR.fullmatch(cursor) if isinstance(cursor, str) else None
    if match is None or int(match.group(1)) >= 2**63:
        raise InvalidSearch("the page cursor is not valid: start again from the first page")
    return int(match.group(1)), match.group(2), match.group(3)


async def reconciliation_queue(db: Database, limit: int = 50, cursor: str | None = None, *,
                               pending_after_us: int = 60_000_000, now: int | None = None) -> ReconciliationPage:
    """Unknown operations, and pending ones begun more than ``pending_after_us`` ago (the
    processing safety window), oldest first."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidSearch(f"limit must be from 1 to {MAX_PAGE_SIZE}")
    now = now_us() if now is None else now
    stale_before = now - pending_after_us
    tx, rf = transactions.c, refunds.c
    attempts = (select(_q.kind, _q.object_id, _q.intent_id, _q.merchant_id, tx.status, tx.connector, tx.reference,
                       tx.amount, tx.currency, _q.created_at, _q.checks, _q.due_at, _q.last_result)
                .join(transactions, and_(tx.id == _q.object_id, _q.kind != literal("refund")))
                .where(or_(tx.status == "unknown", and_(tx.status == "pending", _q.created_at < stale_before))))
    charged = transactions.alias("charged")
    refund_ops = (select(_q.kind, _q.object_id, _q.intent_id, _q.merchant_id, rf.status, charged.c.connector,
                         rf.reference, rf.amount, rf.currency, _q.created_at, _q.checks, _q.due_at, _q.last_result)
                  .join(refunds, and_(rf.id == _q.object_id, _q.kind == literal("refund")))
                  .join(charged, charged.c.id == rf.transaction_id)
                  .where(or_(rf.status == "unknown", and_(rf.status == "pending", _q.created_at < stale_before))))
    both = union_all(attempts, refund_ops).subquery()
    query = select(both).order_by(both.c.created_at, both.c.kind, both.c.object_id).limit(limit + 1)
    if cursor is not None:
        created_at, kind, object_id = _decode(cursor)
        query = query.where(or_(both.c.created_at > created_at, and_(
            both.c.created_at == created_at,
            or_(both.c.kind > kind, and_(both.c.kind == kind, both.c.object_id > object_id)))))
    async with db.read() as conn:
        found = (await conn.execute(query)).all()
    rows = [StuckOperation(kind=r.kind, object_id=r.object_id, intent_id=r.intent_id, merchant_id=r.merchant_id,
                           status=r.status, connector=r.connector, reference=r.reference, amount=r.amount,
                           currency=r.currency, created_at=r.created_at, age_us=max(0, now - r.created_at),
                           checks=r.checks, next_check_at=r.due_at, last_result=r.last_result)
            for r in found[:limit]]
    if len(found) <= limit:
        return ReconciliationPage(rows, None)
    last = rows[-1]
    return ReconciliationPage(rows, f"{last.created_at}.{last.kind}.{last.object_id}")
