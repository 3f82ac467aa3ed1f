"""Charge attempts: persist before the processor call, apply the outcome after.

Lock order (PostgreSQL): every transaction that touches an intent's rows takes the intent
row first — here explicitly, in the capture triggers implicitly — so concurrent writers
queue instead of deadlocking.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.db.schema import payment_intents as intents
from paygate_server.db.schema import reconcile_queue, transactions
from paygate_server.errors import ApiError
from paygate_server.ids import new_id
from paygate_server.intents import repository as intent_repo
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult

__all__ = [
    "Attempt",
    "MAX_FAILED_ATTEMPTS",
    "begin_attempt",
    "apply_charge_result",
    "lock_intent",
    "schedule_check",
    "decline_message",
]

# Card-testing limit (SPEC §5): past this many failed attempts an intent is refused.
MAX_FAILED_ATTEMPTS = 10
_US = 1_000_000

_DECLINE_MESSAGES = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "invalid_number": "The card number is invalid.",
}


def decline_message(code: str | None) -> str:
    return _DECLINE_MESSAGES.get(code or "", "The card was declined.")


@dataclass(frozen=True, slots=True)
class Attempt:
    transaction_id: str
    reference: str
    intent_id: str
    merchant_id: str
    amount: int
    currency: str


async def lock_intent(conn: AsyncConnection, intent_id: str) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(select(intents.c.id).where(intents.c.id == intent_id).with_for_update())


async def schedule_check(conn: AsyncConnection, kind: str, object_id: str, intent_id: str,
                         merchant_id: str, due_at: int, *, checks: int = 0,
                         last_result: str | None = None) -> None:
    """Put (or move) an unsettled charge or refund on the reconciler's queue."""
    moved = await conn.execute(update(reconcile_queue).where(
        reconcile_queue.c.kind == kind, reconcile_queue.c.object_id == object_id,
    ).values(due_at=due_at, checks=checks, last_result=last_result))
    if moved.rowcount == 0:
        await conn.execute(insert(reconcile_queue).values(
            kind=kind, object_id=object_id, intent_id=intent_id, merchant_id=merchant_id,
            due_at=due_at, checks=checks, last_result=last_result, created_at=now_us()))


async def begin_attempt(
    conn: AsyncConnection,
    *,
    merchant_id: str,
    intent_id: str,
    card: dict[str, Any],
    card_fingerprint: str | None,
    vault_id: str | None,
    connector: str,
    in_flight_grace_s: float,
) -> tuple[Mapping[str, Any], Attempt]:
    """Move the intent to ``in_progress`` and record a ``pending`` attempt, atomically."""
    row = await intent_repo.transition(
        conn, merchant_id, intent_id, from_statuses=("created", "failed"),
        values={"status": "in_progress", "card": jsoncodec.dumps(card).decode(), "last_error": None},
        extra_where=(intents.c.failed_attempts < MAX_FAILED_ATTEMPTS,),
    )
    if row is None:
        current = await intent_repo.get_intent(conn, merchant_id, intent_id)
        if current is None:
            raise ApiError("resource_missing", f"no such payment intent: {intent_id}", param="paymentIntentId")
        if current["status"] == "failed" and current["failed_attempts"] >= MAX_FAILED_ATTEMPTS:
            raise ApiError("rate_limited", "too many failed payment attempts on this intent",
                           headers={"Retry-After": "3600"})
        raise ApiError("intent_state_conflict",
                       f"a payment intent in status {current['status']} cannot be processed")
    now = now_us()
    attempt = Attempt(new_id("txn"), new_id("ref"), intent_id, merchant_id, row["amount"], row["currency"])
    try:
        await conn.execute(insert(transactions).values(
            id=attempt.transaction_id, intent_id=intent_id, merchant_id=merchant_id, status="pending",
            reference=attempt.reference, connector=connector, amount=attempt.amount,
            currency=attempt.currency, card_brand=card["brand"], card_last4=card["last4"],
            card_exp_month=card["expMonth"], card_exp_year=card["expYear"],
            card_fingerprint=card_fingerprint, vault_id=vault_id, created_at=now, updated_at=now,
        ))
    except IntegrityError:
        # The partial unique index: another attempt is in flight or already succeeded.
        raise ApiError("intent_state_conflict", "another payment attempt is in flight for this intent") from None
    # If this process dies mid-call, the reconciler owns the attempt after the grace period.
    await conn.execute(insert(reconcile_queue).values(
        kind="charge", object_id=attempt.transaction_id, intent_id=intent_id, merchant_id=merchant_id,
        due_at=now + int(in_flight_grace_s * _US), checks=0, created_at=now))
    return row, attempt


def _next_check_delay(schedule: tuple[float, ...], checks: int) -> float:
    base = schedule[min(checks, len(schedule) - 1)]
    return base * random.uniform(0.8, 1.2)  # jitter: many unknowns must not stampede


async def apply_charge_result(
    conn: AsyncConnection,
    transaction_id: str,
    result: ChargeResult,
    *,
    schedule: tuple[float, ...],
    checks: int = 0,
    on_settled: Callable[[AsyncConnection, Mapping[str, Any]], Awaitable[None]] | None = None,
) -> Mapping[str, Any] | None:
    """Record what the processor said about an attempt, once.

    Definitive outcomes settle the attempt and the intent and leave the reconciler's
    queue; an unknown one marks the attempt ``unknown`` and schedules the next check. Only
    an attempt still ``pending``/``unknown`` changes, so the request and any number of
    reconcilers can race here and the outcome is applied exactly once. Returns the intent
    row after the change, or None if another writer settled the attempt first.
    """
    txn = (await conn.execute(
        select(transactions.c.intent_id, transactions.c.merchant_id, transactions.c.status)
        .where(transactions.c.id == transaction_id))).first()
    if txn is None or txn.status not in ("pending", "unknown"):
        return None
    await lock_intent(conn, txn.intent_id)
    now = now_us()
    outcome = result.outcome
    if outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.RETRY, ChargeOutcome.NOT_FOUND):
        if txn.status == "pending":  # history records the change of state, not every check
            await conn.execute(update(transactions).where(
                transactions.c.id == transaction_id, transactions.c.status == "pending",
            ).values(status="unknown", error_message=(result.message or outcome.value)[:500], updated_at=now))
        await schedule_check(conn, "charge", transaction_id, txn.intent_id, txn.merchant_id,
                             now + int(_next_check_delay(schedule, checks) * _US),
                             checks=checks, last_result=(result.message or outcome.value)[:200])
        return await intent_repo.get_intent(conn, txn.merchant_id, txn.intent_id)

    if outcome is ChargeOutcome.APPROVED:
        txn_values: dict[str, Any] = {"status": "succeeded", "auth_code": result.auth_code}
        intent_values: dict[str, Any] = {"status": "succeeded", "last_error": None}
    else:
        if outcome is ChargeOutcome.DECLINED:
            error = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                     "message": decline_message(result.decline_code)}
        else:  # FAILED: the processor said nothing was charged
            error = {"code": "processing_error", "declineCode": None,
                     "message": "The processor could not process the payment. Try again or use another card."}
        txn_values = {"status": "failed", "decline_code": error["declineCode"], "error_code": error["code"],
                      "error_message": error["message"]}
        intent_values = {"status": "failed", "last_error": jsoncodec.dumps(error).decode(),
                         "failed_attempts": intents.c.failed_attempts + 1}
    settled = await conn.execute(update(transactions).where(
        transactions.c.id == transaction_id, transactions.c.status.in_(("pending", "unknown")),
    ).values(**txn_values, updated_at=now))
    if settled.rowcount != 1:
        return None
    await conn.execute(delete(reconcile_queue).where(
        reconcile_queue.c.kind == "charge", reconcile_queue.c.object_id == transaction_id))
    row = await intent_repo.transition(conn, txn.merchant_id, txn.intent_id,
                                       from_statuses=("in_progress",), values=intent_values)
    if row is not None and on_settled is not None:
        await on_settled(conn, row)  # e.g. the request's idempotent response, in this transaction
    return row
