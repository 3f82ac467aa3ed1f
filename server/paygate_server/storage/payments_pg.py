"""The payment core's store on PostgreSQL: the intent's row lock, and one statement per phase.

The general form (:mod:`.payments`) runs 4–6 statements between BEGIN and COMMIT for a
phase of a payment: 6–8 round trips. Here each phase of the request's own path (create,
begin the attempt, settle it) is one statement of writable CTEs in autocommit instead: one
round trip, atomic on its own. The statements take the same locks in the same order (the
intent's row first) and write the same rows, so the history is the same
(tests/server/storage/test_payment_store_pg_forms.py compares them).

Off the happy path (the Idempotency-Key already there, the intent not processable, the
token spent, another attempt in flight) the statement changes nothing, and a read-only
"why not" lookup says which. Only what that lookup cannot settle — a state that changed
between the two statements — goes to the general form.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.ids import new_id
from paygate_server.storage.idempotency_forms import MERCHANT_SELECTED, OLD_KEY_ABSENT
from paygate_server.storage.payments import (
    ATTEMPT_CARD,
    ATTEMPT_COLUMNS,
    ATTEMPT_KIND,
    COLUMNS,
    DROP_CVC,
    FAIL,
    INSERT_INTENT,
    REDEEM_WHERE,
    SETTLE_PROCESSING,
    START_PROCESSING,
    SUCCEED,
    SqlPaymentStore,
)
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    ExistingKey,
    KeyClaim,
    NewAttempt,
    Outcome,
    Row,
)
from paygate_server.storage.statements import Connection, Sql, execute, fetch_one

__all__ = ["PostgresPaymentStore"]

_LOCK_INTENT = Sql("SELECT id FROM payment_intents WHERE id = :intent_id FOR UPDATE")

# The key's row as one CTE of a larger statement. Without ON CONFLICT: a key that exists
# makes the whole statement fail, and change nothing. In the window after migration 0019
# (``probing``) the key's hex spelling there fails it too: the key becomes NULL, which its
# NOT NULL refuses (storage/idempotency_forms.py).
_KEY_COLUMNS = "merchant_id, idempotency_key, request_hash, state, locked_at, created_at"
_PROBED_KEY = (f"CASE WHEN {OLD_KEY_ABSENT.format(merchant='idem_merchant_id', old_key='idem_old_key')}"
               " THEN :idem_key END")


def _key_values(probing: bool) -> str:
    if not probing:
        return ":idem_merchant_id, :idem_key, :idem_request_hash"
    return f"{MERCHANT_SELECTED.format(merchant='idem_merchant_id')}, {_PROBED_KEY}, :idem_request_hash"


def _claim_done(probing: bool) -> str:
    return (f"idempotency_claim AS (INSERT INTO idempotency_keys ({_KEY_COLUMNS}, response_status,"
            f" response_body) VALUES ({_key_values(probing)}, 'done', :now, :now, 201, :idem_body))")


# By claim: none, the key alone, the key and its hex spelling.
_CREATE: dict[bool | None, Sql] = {None: INSERT_INTENT, False: Sql(f"WITH {_claim_done(False)} {INSERT_INTENT.text}"),
                                  True: Sql(f"WITH {_claim_done(True)} {INSERT_INTENT.text}")}


def _claim_in_progress(source: str, probing: bool) -> str:
    """Claim the key ``in_progress`` once per row of the CTE ``source`` (none: no claim)."""
    return (f"idempotency_claim AS (INSERT INTO idempotency_keys ({_KEY_COLUMNS})"
            f" SELECT {_key_values(probing)}, 'in_progress', :now, :now FROM {source})")


def _begin_sql(redeeming: bool, claiming: bool | None) -> Sql:
    """``claiming``: None no claim, else whether the claim probes the hex spelling."""
    if redeeming:
        # The token is redeemed only if the intent moved (intent row first, as everywhere).
        # A token already used or expired leaves the attempt's status NULL: the not-null
        # violation fails the whole statement, which then changed nothing.
        redeem = (f" redeemed AS (UPDATE vault_cards SET used_at = :now WHERE {REDEEM_WHERE}"
                  " AND EXISTS (SELECT 1 FROM intent) RETURNING id),")
        status, source = "CASE WHEN redeemed.id IS NOT NULL THEN 'pending' END", "intent LEFT JOIN redeemed ON true"
    else:
        redeem, status, source = "", "'pending'", "intent"
    # The main query reads ``intent``, so the intent's update runs (and is captured) first.
    return Sql(
        f"WITH intent AS (UPDATE payment_intents {START_PROCESSING} RETURNING {COLUMNS}),"
        f"{redeem}"
        f" attempt AS (INSERT INTO transactions ({ATTEMPT_COLUMNS}) SELECT :id, intent.id, intent.merchant_id,"
        f" {status}, :reference, :connector, intent.amount, intent.currency, {ATTEMPT_CARD},"
        f" {ATTEMPT_KIND.format(intent='intent')} FROM {source} RETURNING kind),"
        " queued AS (INSERT INTO reconcile_queue (kind, object_id, intent_id, merchant_id, due_at, checks, created_at)"
        " SELECT 'charge', :id, id, merchant_id, :due_at, 0, :now FROM intent)"
        f"{'' if claiming is None else ', ' + _claim_in_progress('intent', claiming)}"
        f" SELECT {COLUMNS}, (SELECT kind FROM attempt) AS attempt_kind FROM intent"
    )


_BEGIN = {(r, c): _begin_sql(r, c) for r in (False, True) for c in (None, False, True)}


def _settle_sql(approved: bool, answering: bool) -> Sql:
    # ``locked`` takes the intent's row before the attempt's; each later step runs only if
    # the one before changed a row.
    text = (
        "WITH locked AS (SELECT id FROM payment_intents WHERE id = :intent_id FOR UPDATE),"
        f" attempt AS (UPDATE transactions {SUCCEED if approved else FAIL} AND EXISTS (SELECT 1 FROM locked)"
        " RETURNING id, vault_id),"
        f" cvc AS ({DROP_CVC.format(vault_id='(SELECT vault_id FROM attempt)')}),"
        " dropped AS (DELETE FROM reconcile_queue WHERE kind = 'charge' AND object_id = :id"
        " AND EXISTS (SELECT 1 FROM attempt)),"
        f" intent AS (UPDATE payment_intents {SETTLE_PROCESSING} AND EXISTS (SELECT 1 FROM attempt)"
        f" RETURNING {COLUMNS})"
    )
    if not answering:
        return Sql(f"{text} SELECT {COLUMNS} FROM intent")
    # The answer rendered in advance is stored only if the intent is exactly the row it was
    # rendered for: the first phase's version plus this one change.
    answer = ("idempotency_answer AS (UPDATE idempotency_keys SET state = 'done', response_status = 200,"
              " response_body = :idem_body WHERE merchant_id = :idem_merchant_id AND idempotency_key = :idem_key"
              " AND state = 'in_progress' AND EXISTS (SELECT 1 FROM intent WHERE version = :expected_version)"
              " RETURNING 1)")
    return Sql(f"{text}, {answer} SELECT {COLUMNS}, EXISTS (SELECT 1 FROM idempotency_answer) AS answered"
               " FROM intent")


_SETTLE = {(a, s): _settle_sql(a, s) for a in (True, False) for s in (True, False)}


def _key_params(claim: KeyClaim, old_key: dict[str, str]) -> dict[str, str]:
    """The claim's parameters (``old_key``: :meth:`SqlPaymentStore._old_key`'s)."""
    return {"idem_merchant_id": claim.merchant_id, "idem_key": claim.key, "idem_request_hash": claim.request_hash,
            **{f"idem_{name}": value for name, value in old_key.items()}}


class PostgresPaymentStore(SqlPaymentStore):
    async def _lock_intent(self, conn: Connection, intent_id: str) -> None:
        await execute(conn, _LOCK_INTENT, intent_id=intent_id)

    async def _key_in_the_way(self, conn: Connection, claim: KeyClaim | None) -> ExistingKey | None:
        """After a one-statement form changed nothing: the key that stopped it (for the
        endpoint to judge, or abandoned), None if no key stands in the way. On the caller's
        connection: a request never holds two (under a burst, two each would exhaust the pool)."""
        return None if claim is None else await self._find_key(conn, claim)

    async def create_intent(self, row: Row, claim: KeyClaim | None, answer: bytes) -> ExistingKey | None:
        params: dict[str, Any] = dict(row)
        try:
            async with self._db.autocommit() as conn:
                probing = None
                if claim is not None:
                    old = await self._old_key(conn, claim)
                    probing = bool(old)
                    params.update(_key_params(claim, old), idem_body=claim.seal(answer), now=row["created_at"])
                await execute(conn, _CREATE[probing], **params)
            return None
        except IntegrityError:
            if claim is None:
                raise
        async with self._db.read_one() as conn:
            in_the_way = await self._key_in_the_way(conn, claim)
        return in_the_way or await super().create_intent(row, claim, answer)

    # The happy path of each phase runs this module's code only (and the driver's): what the
    # general form shares with it is SQL text, evaluated at import.

    async def begin_attempt(self, new: NewAttempt, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey:
        now = now_us()
        txn_id, reference = new_id("txn"), new_id("ref")
        card = new.card
        params: dict[str, Any] = {
            "intent_id": new.intent_id, "merchant_id": new.merchant_id, "card": jsoncodec.dumps(card).decode(),
            "max_failed": new.max_failed_attempts, "now": now, "id": txn_id, "reference": reference,
            "connector": new.connector, "due_at": now + new.check_after_us, "brand": card["brand"],
            "last4": card["last4"], "exp_month": card["expMonth"], "exp_year": card["expYear"],
            "fingerprint": new.card_fingerprint, "vault_id": new.vault_id,
        }
        row = None
        async with self._db.autocommit() as conn:
            probing = None
            if claim is not None:
                old = await self._old_key(conn, claim)
                probing = bool(old)
                params.update(_key_params(claim, old))
            try:
                row = await fetch_one(conn, _BEGIN[new.vault_id is not None, probing], **params)
            except IntegrityError:
                pass  # the key exists, or another attempt is in flight, or the token is spent
            if row is not None:
                intent = dict(row)
                return intent, Attempt(txn_id, reference, new.intent_id, new.merchant_id, row["amount"],
                                       row["currency"], intent.pop("attempt_kind"), connector=new.connector)
            if (in_the_way := await self._key_in_the_way(conn, claim)) is not None:
                return in_the_way
            if (refusal := await self.why_not_begin(conn, new)) is not None:
                raise refusal
        return await super().begin_attempt(new, claim)  # a state that changed between the two

    async def settle_attempt(self, attempt: Attempt, outcome: Outcome, *, before: Row | None = None,
                             answer: AnswerSpec | None = None) -> tuple[Row | None, bool]:
        if outcome.status == "unknown":
            return await super().settle_attempt(attempt, outcome, before=before, answer=answer)
        now = now_us()
        approved = outcome.status == "succeeded"
        failed = int(not approved)
        params: dict[str, Any] = {
            "id": attempt.transaction_id, "now": now, "intent_id": attempt.intent_id,
            "merchant_id": attempt.merchant_id, "status": outcome.status, "last_error": outcome.intent_error,
            "failed": failed, "processor_id": outcome.processor_id, **({"auth_code": outcome.auth_code} if approved else {
                "decline_code": outcome.decline_code, "error_code": outcome.error_code,
                "error_message": outcome.error_message})}
        async with self._db.autocommit() as conn:
            if answer is None or before is None:
                return await fetch_one(conn, _SETTLE[approved, False], **params), False
            # The row SETTLE_PROCESSING will write, rendered in advance: the statement stores
            # it only if that is the row it writes (see _settle_sql).
            holds = approved and before["capture_method"] == "manual"
            expected = {**dict(before), "status": "requires_capture" if holds else outcome.status,
                        "amount_capturable": before["amount"] if holds else 0,
                        "amount_received": before["amount"] if approved and not holds else 0,
                        "last_error": outcome.intent_error, "failed_attempts": before["failed_attempts"] + failed,
                        "version": before["version"] + 1, "updated_at": now}
            row = await fetch_one(conn, _SETTLE[approved, True], **params,
                                  idem_merchant_id=answer.claim.merchant_id, idem_key=answer.claim.key,
                                  idem_body=answer.claim.seal(answer.render(expected)),
                                  expected_version=expected["version"])
        if row is None:
            return None, False
        settled = dict(row)
        return settled, bool(settled.pop("answered"))
