"""Charge attempts: persist before the processor call, apply the outcome after.

Lock order (PostgreSQL): every transaction that touches an intent's rows takes the intent
row first — here explicitly, in the capture triggers implicitly — so concurrent writers
queue instead of deadlocking.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.db.statements import Sql, execute, fetch_one
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


# Hand-written SQL on the driver (paygate_server.db.statements): every payment runs these.
_LOCK_INTENT = Sql("SELECT id FROM payment_intents WHERE id = :intent_id FOR UPDATE")
_MOVE_CHECK = Sql(
    "UPDATE reconcile_queue SET due_at = :due_at, checks = :checks, last_result = :last_result"
    " WHERE kind = :kind AND object_id = :object_id"
)
_ADD_CHECK = Sql(
    "INSERT INTO reconcile_queue (kind, object_id, intent_id, merchant_id, due_at, checks, last_result,"
    " created_at) VALUES (:kind, :object_id, :intent_id, :merchant_id, :due_at, :checks, :last_result, :now)"
)
_DROP_CHECK = Sql("DELETE FROM reconcile_queue WHERE kind = :kind AND object_id = :object_id")
_INSERT_ATTEMPT = Sql(
    "INSERT INTO transactions (id, intent_id, merchant_id, status, reference, connector, amount, currency,"
    " card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint, vault_id, created_at,"
    " updated_at) VALUES (:id, :intent_id, :merchant_id, 'pending', :reference, :connector, :amount,"
    " :currency, :brand, :last4, :exp_month, :exp_year, :fingerprint, :vault_id, :now, :now)"
)
_ATTEMPT = Sql("SELECT intent_id, merchant_id, status FROM transactions WHERE id = :id")
_MARK_UNKNOWN = Sql(
    "UPDATE transactions SET status = 'unknown', error_message = :message, updated_at = :now"
    " WHERE id = :id AND status = 'pending'"
)
_UNSETTLED = "WHERE id = :id AND status IN ('pending', 'unknown')"
_SUCCEED_ATTEMPT = Sql(f"UPDATE transactions SET status = 'succeeded', auth_code = :auth_code, updated_at = :now {_UNSETTLED}")
_FAIL_ATTEMPT = Sql(
    "UPDATE transactions SET status = 'failed', decline_code = :decline_code, error_code = :error_code,"
    f" error_message = :error_message, updated_at = :now {_UNSETTLED}"
)


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
        await execute(conn, _LOCK_INTENT, intent_id=intent_id)


async def schedule_check(conn: AsyncConnection, kind: str, object_id: str, intent_id: str,
                         merchant_id: str, due_at: int, *, checks: int = 0,
                         last_result: str | None = None) -> None:
    """Put (or move) an unsettled charge or refund on the reconciler's queue."""
    check = {"kind": kind, "object_id": object_id, "due_at": due_at, "checks": checks, "last_result": last_result}
    if not await execute(conn, _MOVE_CHECK, **check):
        await execute(conn, _ADD_CHECK, **check, intent_id=intent_id, merchant_id=merchant_id, now=now_us())


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
    row = await intent_repo.start_processing(conn, merchant_id, intent_id, card=jsoncodec.dumps(card).decode(),
                                             max_failed_attempts=MAX_FAILED_ATTEMPTS)
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
        await execute(conn, _INSERT_ATTEMPT,
            id=attempt.transaction_id, intent_id=intent_id, merchant_id=merchant_id,
            reference=attempt.reference, connector=connector, amount=attempt.amount,
            currency=attempt.currency, brand=card["brand"], last4=card["last4"],
            exp_month=card["expMonth"], exp_year=card["expYear"],
            fingerprint=card_fingerprint, vault_id=vault_id, now=now,
        )
    except IntegrityError:
        # The partial unique index: another attempt is in flight or already succeeded.
        raise ApiError("intent_state_conflict", "another payment attempt is in flight for this intent") from None
    # If this process dies mid-call, the reconciler owns the attempt after the grace period.
    await execute(conn, _ADD_CHECK, kind="charge", object_id=attempt.transaction_id, intent_id=intent_id,
                  merchant_id=merchant_id, due_at=now + int(in_flight_grace_s * _US), checks=0,
                  last_result=None, now=now)
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
    txn = await fetch_one(conn, _ATTEMPT, id=transaction_id)
    if txn is None or txn["status"] not in ("pending", "unknown"):
        return None
    intent_id, merchant_id = txn["intent_id"], txn["merchant_id"]
    await lock_intent(conn, intent_id)
    now = now_us()
    outcome = result.outcome
    if outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.RETRY, ChargeOutcome.NOT_FOUND):
        if txn["status"] == "pending":  # history records the change of state, not every check
            await execute(conn, _MARK_UNKNOWN, id=transaction_id,
                          message=(result.message or outcome.value)[:500], now=now)
        await schedule_check(conn, "charge", transaction_id, intent_id, merchant_id,
                             now + int(_next_check_delay(schedule, checks) * _US),
                             checks=checks, last_result=(result.message or outcome.value)[:200])
        return await intent_repo.get_intent(conn, merchant_id, intent_id)

    if outcome is ChargeOutcome.APPROVED:
        status, last_error = "succeeded", None
        settled = await execute(conn, _SUCCEED_ATTEMPT, id=transaction_id, auth_code=result.auth_code, now=now)
    else:
        if outcome is ChargeOutcome.DECLINED:
            error = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                     "message": decline_message(result.decline_code)}
        else:  # FAILED: the processor said nothing was charged
            error = {"code": "processing_error", "declineCode": None,
                     "message": "The processor could not process the payment. Try again or use another card."}
        status, last_error = "failed", jsoncodec.dumps(error).decode()
        settled = await execute(conn, _FAIL_ATTEMPT, id=transaction_id, decline_code=error["declineCode"],
                                error_code=error["code"], error_message=error["message"], now=now)
    if settled != 1:
        return None
    await execute(conn, _DROP_CHECK, kind="charge", object_id=transaction_id)
    row = await intent_repo.settle_processing(conn, merchant_id, intent_id, status=status, last_error=last_error)
    if row is not None and on_settled is not None:
        await on_settled(conn, row)  # e.g. the request's idempotent response, in this transaction
    return row
