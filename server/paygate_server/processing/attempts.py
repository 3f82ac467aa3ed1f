"""Charge attempts: persist before the processor call, apply the outcome after.

Lock order (PostgreSQL): every transaction that touches an intent's rows takes the intent
row first — here explicitly, in the capture triggers implicitly — so concurrent writers
queue instead of deadlocking. An attempt consumes its card token (vault row) after the
intent's row, in both forms.
"""
from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.http.idempotency import answer_cte, claim_in_progress_cte
from paygate_server.ids import new_id
from paygate_server.intents import repository as intent_repo
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
from paygate_server.storage.statements import Autocommit, Sql, execute, fetch_one

# The message of ``token_invalid`` (SPEC §5), shared with the vault's own refusals.
TOKEN_INVALID_MESSAGE = ("the token is not valid for this payment (tokens are single-use, expire,"
                         " and belong to one payment intent)")

__all__ = [
    "Answer",
    "Attempt",
    "NewAttempt",
    "begin_attempt_at_once",
    "redeem_token",
    "settle_attempt_at_once",
    "is_definitive",
    "MAX_FAILED_ATTEMPTS",
    "TOKEN_INVALID_MESSAGE",
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


# Hand-written SQL on the driver (paygate_server.storage.statements): every payment runs these.
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
_ATTEMPT_COLUMNS = (
    "id, intent_id, merchant_id, status, reference, connector, amount, currency, card_brand, card_last4,"
    " card_exp_month, card_exp_year, card_fingerprint, vault_id, created_at, updated_at"
)
_ATTEMPT_CARD = ":brand, :last4, :exp_month, :exp_year, :fingerprint, :vault_id, :now, :now"
_INSERT_ATTEMPT = Sql(
    f"INSERT INTO transactions ({_ATTEMPT_COLUMNS}) VALUES (:id, :intent_id, :merchant_id, 'pending',"
    f" :reference, :connector, :amount, :currency, {_ATTEMPT_CARD})"
)
_ATTEMPT = Sql("SELECT intent_id, merchant_id, status, vault_id FROM transactions WHERE id = :id")
_MARK_UNKNOWN = Sql(
    "UPDATE transactions SET status = 'unknown', error_message = :message, updated_at = :now"
    " WHERE id = :id AND status = 'pending'"
)
_UNSETTLED = "WHERE id = :id AND status IN ('pending', 'unknown')"
_SUCCEED = f"SET status = 'succeeded', auth_code = :auth_code, updated_at = :now {_UNSETTLED}"
_FAIL = (
    "SET status = 'failed', decline_code = :decline_code, error_code = :error_code,"
    f" error_message = :error_message, updated_at = :now {_UNSETTLED}"
)
# The attempt consumes the card token it charges, in its own transaction (both forms): a
# request refused by its Idempotency-Key, a non-processable intent or a lost race rolls
# back and leaves the token redeemable.
_REDEEM_WHERE = "id = :vault_id AND used_at IS NULL AND expires_at > :now"
_REDEEM_TOKEN = Sql(f"UPDATE vault_cards SET used_at = :now WHERE {_REDEEM_WHERE}")
_SUCCEED_ATTEMPT = Sql(f"UPDATE transactions {_SUCCEED}")
_FAIL_ATTEMPT = Sql(f"UPDATE transactions {_FAIL}")
# The CVC may be kept only until the authorization (SPEC §5): it goes with the outcome, in
# the same transaction (or statement), whoever records it — the request, a reconciler, a
# processor's notification. The vault row is taken after the intent's, as the token's
# redemption in begin_attempt does; its other writers (purge) hold no intent lock.
_DROP_CVC = "UPDATE vault_cards SET cvc_sealed = NULL WHERE id = {vault_id} AND cvc_sealed IS NOT NULL"
_DROP_ATTEMPT_CVC = Sql(_DROP_CVC.format(vault_id=":vault_id"))


def decline_message(code: str | None) -> str:
    return _DECLINE_MESSAGES.get(code or "", "The card was declined.")


def is_definitive(result: ChargeResult) -> bool:
    """The processor said yes or no (as opposed to: unknown, try again, never heard of it)."""
    return result.outcome in (ChargeOutcome.APPROVED, ChargeOutcome.DECLINED, ChargeOutcome.FAILED)


@dataclass(frozen=True, slots=True)
class _Settlement:
    """What a definitive outcome writes: the attempt's statement and values, the intent's."""

    attempt_sql: Sql
    attempt_params: dict[str, Any]
    status: str
    last_error: str | None

    @property
    def approved(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def of(cls, result: ChargeResult) -> _Settlement:
        if result.outcome is ChargeOutcome.APPROVED:
            return cls(_SUCCEED_ATTEMPT, {"auth_code": result.auth_code}, "succeeded", None)
        if result.outcome is ChargeOutcome.DECLINED:
            error: dict[str, str | None] = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                     "message": decline_message(result.decline_code)}
        else:  # FAILED: the processor said nothing was charged
            error = {"code": "processing_error", "declineCode": None,
                     "message": "The processor could not process the payment. Try again or use another card."}
        return cls(_FAIL_ATTEMPT, {"decline_code": error["declineCode"], "error_code": error["code"],
                                   "error_message": error["message"]},
                   "failed", jsoncodec.dumps(error).decode())


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """What starting an attempt needs (both forms: general and one-statement)."""

    merchant_id: str
    intent_id: str
    card: dict[str, Any]
    card_fingerprint: str | None
    vault_id: str | None
    connector: str
    in_flight_grace_s: float


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


def _card_params(new: NewAttempt) -> dict[str, Any]:
    """The attempt's card columns (``_ATTEMPT_CARD``): a summary, never the number."""
    card = new.card
    return {"brand": card["brand"], "last4": card["last4"], "exp_month": card["expMonth"],
            "exp_year": card["expYear"], "fingerprint": new.card_fingerprint, "vault_id": new.vault_id}


async def redeem_token(conn: AsyncConnection | Autocommit, vault_id: str) -> bool:
    """Mark a vault token used, unless it already is or has expired (then False)."""
    return await execute(conn, _REDEEM_TOKEN, vault_id=vault_id, now=now_us()) == 1


async def begin_attempt(conn: AsyncConnection, new: NewAttempt) -> tuple[Mapping[str, Any], Attempt]:
    """Move the intent to ``in_progress`` and record a ``pending`` attempt, atomically
    (consuming the card's vault token, if it came from one)."""
    merchant_id, intent_id = new.merchant_id, new.intent_id
    row = await intent_repo.start_processing(conn, merchant_id, intent_id, card=jsoncodec.dumps(new.card).decode(),
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
    if new.vault_id is not None and not await redeem_token(conn, new.vault_id):
        # Used by a concurrent request (or expired) since the card was read.
        raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param="token")
    now = now_us()
    attempt = Attempt(new_id("txn"), new_id("ref"), intent_id, merchant_id, row["amount"], row["currency"])
    try:
        await execute(conn, _INSERT_ATTEMPT, id=attempt.transaction_id, intent_id=intent_id,
                      merchant_id=merchant_id, reference=attempt.reference, connector=new.connector,
                      amount=attempt.amount, currency=attempt.currency, **_card_params(new), now=now)
    except IntegrityError:
        # The partial unique index: another attempt is in flight or already succeeded.
        raise ApiError("intent_state_conflict", "another payment attempt is in flight for this intent") from None
    # If this process dies mid-call, the reconciler owns the attempt after the grace period.
    await execute(conn, _ADD_CHECK, kind="charge", object_id=attempt.transaction_id, intent_id=intent_id,
                  merchant_id=merchant_id, due_at=now + int(new.in_flight_grace_s * _US), checks=0,
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
    check_by: int | None = None,
    on_settled: Callable[[AsyncConnection, Mapping[str, Any]], Awaitable[None]] | None = None,
) -> Mapping[str, Any] | None:
    """Record what the processor said about an attempt, once.

    Definitive outcomes settle the attempt and the intent, drop the vaulted CVC and leave
    the reconciler's queue; an unknown one marks the attempt ``unknown`` and schedules the
    next check: the back-off step, but no later than ``check_by`` (µs; a deadline at which
    the answer is judged differently, e.g. "not found" becoming "never received"). Only
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
        due_at = now + int(_next_check_delay(schedule, checks) * _US)
        if check_by is not None:
            due_at = min(due_at, check_by)
        await schedule_check(conn, "charge", transaction_id, intent_id, merchant_id, due_at,
                             checks=checks, last_result=(result.message or outcome.value)[:200])
        return await intent_repo.get_intent(conn, merchant_id, intent_id)

    settle = _Settlement.of(result)
    settled = await execute(conn, settle.attempt_sql, id=transaction_id, **settle.attempt_params, now=now)
    if settled != 1:
        return None
    if txn["vault_id"] is not None:  # paid with a checkout token (an encrypted card kept nothing)
        await execute(conn, _DROP_ATTEMPT_CVC, vault_id=txn["vault_id"])
    await execute(conn, _DROP_CHECK, kind="charge", object_id=transaction_id)
    row = await intent_repo.settle_processing(conn, merchant_id, intent_id, status=settle.status,
                                              last_error=settle.last_error)
    if row is not None and on_settled is not None:
        await on_settled(conn, row)  # e.g. the request's idempotent response, in this transaction
    return row


# --- PostgreSQL: each phase of the request's own attempt as one statement ------------------
#
# begin_attempt and apply_charge_result run 4–6 statements between BEGIN and COMMIT: 6–8
# round trips each. On PostgreSQL the request's own path runs each phase as one statement
# made of writable CTEs instead, in autocommit: one round trip, atomic on its own. The
# statements take the same locks in the same order (the intent's row first) and write the
# same rows, so the history is the same. Anything off the happy path (the intent not in a
# processable state, the Idempotency-Key already used, another attempt in flight, a
# reconciler that got there first) makes the statement change nothing, and the caller
# falls back to the general functions above, which judge and answer.

def _begin_ctes(redeeming: bool) -> str:
    if redeeming:
        # The token is redeemed only if the intent moved (intent row first, as everywhere).
        # A token already used or expired leaves the attempt's status NULL: the not-null
        # violation fails the whole statement, which then changed nothing (the token stays
        # as it was, and the general path answers token_invalid).
        redeem = (f" redeemed AS (UPDATE vault_cards SET used_at = :now WHERE {_REDEEM_WHERE}"
                  " AND EXISTS (SELECT 1 FROM intent) RETURNING id),")
        status, source = "CASE WHEN redeemed.id IS NOT NULL THEN 'pending' END", "intent LEFT JOIN redeemed ON true"
    else:
        redeem, status, source = "", "'pending'", "intent"
    return (
        f"WITH intent AS (UPDATE payment_intents {intent_repo.START_PROCESSING} RETURNING {intent_repo.COLUMNS}),"
        f"{redeem}"
        f" attempt AS (INSERT INTO transactions ({_ATTEMPT_COLUMNS}) SELECT :id, intent.id, intent.merchant_id,"
        f" {status}, :reference, :connector, intent.amount, intent.currency, {_ATTEMPT_CARD} FROM {source}),"
        " queued AS (INSERT INTO reconcile_queue (kind, object_id, intent_id, merchant_id, due_at, checks, created_at)"
        " SELECT 'charge', :id, id, merchant_id, :due_at, 0, :now FROM intent)"
    )


# The main query reads ``intent``, so the intent's update runs (and is captured) first.
# Keyed by (redeeming a token, claiming an Idempotency-Key).
_BEGIN = {
    (redeeming, claiming): Sql(f"{_begin_ctes(redeeming)}"
                               f"{', ' + claim_in_progress_cte('intent') if claiming else ''}"
                               f" SELECT {intent_repo.COLUMNS} FROM intent")
    for redeeming in (False, True) for claiming in (False, True)
}


def _settle_sql(attempt_change: str, answering: bool) -> Sql:
    # ``locked`` takes the intent's row before the attempt's (the lock order of this
    # module); each later step runs only if the one before changed a row.
    text = (
        "WITH locked AS (SELECT id FROM payment_intents WHERE id = :intent_id FOR UPDATE),"
        f" attempt AS (UPDATE transactions {attempt_change} AND EXISTS (SELECT 1 FROM locked) RETURNING id, vault_id),"
        f" cvc AS ({_DROP_CVC.format(vault_id='(SELECT vault_id FROM attempt)')}),"
        " dropped AS (DELETE FROM reconcile_queue WHERE kind = 'charge' AND object_id = :id"
        " AND EXISTS (SELECT 1 FROM attempt)),"
        f" intent AS (UPDATE payment_intents {intent_repo.SETTLE_PROCESSING} AND EXISTS (SELECT 1 FROM attempt)"
        f" RETURNING {intent_repo.COLUMNS})"
    )
    if not answering:
        return Sql(f"{text} SELECT {intent_repo.COLUMNS} FROM intent")
    answer = answer_cte("EXISTS (SELECT 1 FROM intent WHERE version = :expected_version)")
    return Sql(f"{text}, {answer} SELECT {intent_repo.COLUMNS},"
               " EXISTS (SELECT 1 FROM idempotency_answer) AS answered FROM intent")


_SETTLE = {(approved, answering): _settle_sql(_SUCCEED if approved else _FAIL, answering)
           for approved in (True, False) for answering in (True, False)}


@dataclass(frozen=True, slots=True)
class Answer:
    """The request's idempotent answer, stored in the statement that settles its attempt."""

    key: dict[str, str]  # IdempotencyScope.statement_params()
    before: Mapping[str, Any]  # the intent as the first phase left it
    render: Callable[[Mapping[str, Any]], bytes]  # the answer's body for a settled intent row
    seal: Callable[[bytes], bytes]  # a body as stored (IdempotencyScope.seal)


async def begin_attempt_at_once(conn: Autocommit, new: NewAttempt, *,
                                key: dict[str, str] | None) -> tuple[Mapping[str, Any], Attempt] | None:
    """:func:`begin_attempt`, with the key's ``in_progress`` claim, as one statement.
    None: nothing changed, take the general path."""
    now = now_us()
    txn_id, reference = new_id("txn"), new_id("ref")
    params = {
        "intent_id": new.intent_id, "merchant_id": new.merchant_id, "card": jsoncodec.dumps(new.card).decode(),
        "max_failed": MAX_FAILED_ATTEMPTS, "now": now, "id": txn_id, "reference": reference,
        "connector": new.connector, **_card_params(new), "due_at": now + int(new.in_flight_grace_s * _US),
    }
    sql = _BEGIN[new.vault_id is not None, key is not None]
    try:
        row = await fetch_one(conn, sql, **params, **(key or {}), **({"idem_now": now} if key else {}))
    except IntegrityError:
        return None  # the key exists, or another attempt is in flight: the general path says which
    if row is None:
        return None  # not processable (missing, wrong status, too many failures, token used)
    return row, Attempt(txn_id, reference, new.intent_id, new.merchant_id, row["amount"], row["currency"])


async def settle_attempt_at_once(conn: Autocommit, attempt: Attempt, result: ChargeResult, *,
                                 answer: Answer | None) -> tuple[Mapping[str, Any] | None, bool]:
    """:func:`apply_charge_result` for a definitive outcome, as one statement, storing the
    request's answer too if the intent is still as the first phase left it (then the
    answer rendered here in advance is the settled row's). Returns the settled intent row
    (None: a reconciler settled the attempt first) and whether the answer was stored."""
    settle = _Settlement.of(result)
    now = now_us()
    failed = int(not settle.approved)
    params = {"id": attempt.transaction_id, **settle.attempt_params, "now": now, "intent_id": attempt.intent_id,
              "merchant_id": attempt.merchant_id, "status": settle.status, "last_error": settle.last_error,
              "failed": failed}
    if answer is None:
        return await fetch_one(conn, _SETTLE[settle.approved, False], **params), False
    before = answer.before
    expected = {**dict(before), "status": settle.status, "last_error": settle.last_error,
                "failed_attempts": before["failed_attempts"] + failed, "version": before["version"] + 1,
                "updated_at": now}
    row = await fetch_one(conn, _SETTLE[settle.approved, True], **params,
                          idem_merchant_id=answer.key["idem_merchant_id"], idem_key=answer.key["idem_key"],
                          idem_body=answer.seal(answer.render(expected)), expected_version=expected["version"])
    if row is None:
        return None, False
    settled = dict(row)
    return settled, bool(settled.pop("answered"))
