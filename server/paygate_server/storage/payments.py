"""The payment core's store on SQL: the general form, the same on both databases.

Every change is one transaction (``Database.write``: group commit on SQLite). Statements
that every payment runs are hand-written SQL on the driver (:mod:`.statements`); the rest
(listing, settlement) is SQLAlchemy Core. :class:`SqlitePaymentStore` is this form as it
is: SQLite serializes writers with its write lock, so nothing else needs locking.
:mod:`.payments_pg` adds PostgreSQL's row lock and its one-statement forms.

Lock order (PostgreSQL): every transaction that touches an intent's rows takes the
intent's row first — explicitly (:meth:`SqlPaymentStore._lock_intent`), by updating it,
or in the capture triggers — so concurrent writers queue instead of deadlocking. An
attempt consumes its card token (vault row) after the intent's row.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.ids import new_id
from paygate_server.storage.engine import Database
from paygate_server.storage.holds import HoldOperations
from paygate_server.storage.idempotency_forms import (
    EITHER_SPELLING,
    MERCHANT_SELECTED,
    OLD_KEY_ABSENT,
    found_in_hex,
    hex_written_until,
    old_spelling,
    request_hash_in_letters,
)
from paygate_server.storage.late_outcomes import LateOutcomes
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    AttemptInFlight,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    KeyClaim,
    NewAttempt,
    Outcome,
    ProcessorIdNotRecorded,
    Row,
    StoreRefusal,
    TokenSpent,
    TooManyFailures,
    claim_abandoned,
)
from paygate_server.storage.reconcile_queue import (
    ReconcileQueue,
    add_check,
    defer_check,
    drop_check,
)
from paygate_server.storage.refunds import REFUND_BY_REFERENCE, RefundOperations
from paygate_server.storage.schema import payment_intents, refunds, transactions
from paygate_server.storage.statements import Connection, Sql, execute, fetch_one

__all__ = ["SqlPaymentStore", "SqlitePaymentStore"]

# Every intent column, in table order: the SELECT and RETURNING list of every statement.
COLUMNS = ", ".join(c.name for c in payment_intents.c)
INSERT_INTENT = Sql(f"INSERT INTO payment_intents ({COLUMNS})"
                    f" VALUES ({', '.join(':' + c.name for c in payment_intents.c)})")
_BY_ID = "id = :intent_id AND merchant_id = :merchant_id"
_GET_INTENT = Sql(f"SELECT {COLUMNS} FROM payment_intents WHERE {_BY_ID}")
# The checkout's lookup (its frame, its status stream and every tokenization), with the
# intent's tokenizations so far (the card-testing limit, checked before the decryption):
# one statement on the driver.
_CHECKOUT_INTENT = Sql(
    f"SELECT {', '.join('i.' + c.name for c in payment_intents.c)},"
    " coalesce(l.tokenizations, 0) AS checkout_tokenizations FROM payment_intents i"
    " LEFT JOIN checkout_limits l ON l.intent_id = i.id WHERE i.client_secret_hash = :secret_hash"
)
_CANCEL = Sql(f"UPDATE payment_intents SET status = 'canceled', version = version + 1, updated_at = :now"
              f" WHERE {_BY_ID} AND status IN ('created', 'failed') RETURNING {COLUMNS}")
# The processing transitions, also the heart of PostgreSQL's one-statement forms.
START_PROCESSING = (
    "SET status = 'in_progress', card = :card, last_error = NULL, version = version + 1, updated_at = :now"
    f" WHERE {_BY_ID} AND status IN ('created', 'failed') AND failed_attempts < :max_failed"
)
# An approved authorization holds the amount (requires_capture); an approved charge has received it.
_HOLDS = "(:status = 'succeeded' AND capture_method = 'manual')"
SETTLE_PROCESSING = (
    f"SET status = CASE WHEN {_HOLDS} THEN 'requires_capture' ELSE :status END,"
    f" amount_capturable = CASE WHEN {_HOLDS} THEN amount ELSE 0 END,"
    " amount_received = CASE WHEN :status = 'succeeded' AND capture_method = 'automatic' THEN amount ELSE 0 END,"
    " last_error = :last_error, failed_attempts = failed_attempts + :failed,"
    f" version = version + 1, updated_at = :now WHERE {_BY_ID} AND status = 'in_progress'"
)
_START_PROCESSING = Sql(f"UPDATE payment_intents {START_PROCESSING} RETURNING {COLUMNS}")
_SETTLE_PROCESSING = Sql(f"UPDATE payment_intents {SETTLE_PROCESSING} RETURNING {COLUMNS}")

# Why an intent cannot start an attempt, read in one statement (no row is locked).
_WHY_NOT_BEGIN = Sql(
    "SELECT i.status, i.failed_attempts,"
    " EXISTS (SELECT 1 FROM transactions t WHERE t.intent_id = :intent_id"
    " AND t.status IN ('pending', 'unknown', 'succeeded')) AS in_flight,"
    " EXISTS (SELECT 1 FROM vault_cards v WHERE v.id = :vault_id AND v.used_at IS NULL"
    " AND v.expires_at > :now) AS token_ok"
    " FROM (SELECT 1 AS one) AS one LEFT JOIN payment_intents i"
    " ON i.id = :intent_id AND i.merchant_id = :merchant_id"
)

ATTEMPT_COLUMNS = (
    "id, intent_id, merchant_id, status, reference, connector, amount, currency, card_brand, card_last4,"
    " card_exp_month, card_exp_year, card_fingerprint, vault_id, created_at, updated_at, kind"
)
ATTEMPT_CARD = ":brand, :last4, :exp_month, :exp_year, :fingerprint, :vault_id, :now, :now"
# A manual-capture intent's attempt authorizes only (``{intent}``: the intent's row).
ATTEMPT_KIND = "CASE WHEN {intent}.capture_method = 'manual' THEN 'authorization' ELSE 'charge' END"
_INSERT_ATTEMPT = Sql(
    f"INSERT INTO transactions ({ATTEMPT_COLUMNS}) SELECT :id, id, merchant_id, 'pending',"
    f" :reference, :connector, amount, currency, {ATTEMPT_CARD}, {ATTEMPT_KIND.format(intent='payment_intents')}"
    " FROM payment_intents WHERE id = :intent_id RETURNING kind"
)
_ATTEMPT = Sql("SELECT id, intent_id, merchant_id, status, kind, reference, amount, currency, vault_id, created_at"
               " FROM transactions WHERE id = :id")
# An operation as the reconciler and a processor's notification see it: a capture's or
# void's authorization's reference and processor id are what it acts on.
OPERATION = ("SELECT t.id, t.intent_id, t.merchant_id, t.status, t.kind, t.reference, t.amount, t.currency,"
             " t.created_at, t.reason, t.connector, p.reference AS charge_reference,"
             " CASE WHEN t.parent_id IS NULL THEN t.processor_id ELSE p.processor_id END AS processor_id"
             " FROM transactions t LEFT JOIN transactions p ON p.id = t.parent_id")
_ATTEMPT_FOR_CHECK = Sql(f"{OPERATION} WHERE t.id = :id")
_UNSETTLED = "WHERE id = :id AND status IN ('pending', 'unknown')"
# The processor's id of an operation is kept once known (an answer without one keeps it).
_PROCESSOR_ID = "processor_id = COALESCE(:processor_id, processor_id)"
SUCCEED = f"SET status = 'succeeded', auth_code = :auth_code, {_PROCESSOR_ID}, updated_at = :now {_UNSETTLED}"
FAIL = (
    "SET status = 'failed', decline_code = :decline_code, error_code = :error_code,"
    f" error_message = :error_message, {_PROCESSOR_ID}, updated_at = :now {_UNSETTLED}"
)
_SUCCEED_ATTEMPT = Sql(f"UPDATE transactions {SUCCEED}")
_FAIL_ATTEMPT = Sql(f"UPDATE transactions {FAIL}")
_MARK_ATTEMPT_UNKNOWN = Sql(f"UPDATE transactions SET status = 'unknown', error_message = :message, {_PROCESSOR_ID},"
                            " updated_at = :now WHERE id = :id AND status = 'pending'")
# Failover (SPEC §7): the next attempt, at another account, with the same card's summary.
_INSERT_FAILOVER = Sql(
    f"INSERT INTO transactions ({ATTEMPT_COLUMNS}) SELECT :id, intent_id, merchant_id, 'pending', :reference,"
    " :connector, amount, currency, card_brand, card_last4, card_exp_month, card_exp_year, card_fingerprint,"
    " vault_id, :now, :now, kind FROM transactions WHERE id = :previous"
)
# A processor's notification names an operation by the gateway's reference, or by the
# processor's id of its payment (the newest such operation of the account).
_KINDS = {"charge": "('charge', 'authorization')", "capture": "('capture')", "void": "('void')"}
_BY_REFERENCE = {kind: Sql(f"{OPERATION} WHERE t.reference = :reference AND t.connector = :connector"
                           f" AND t.kind IN {kinds}") for kind, kinds in _KINDS.items()}
_BY_PROCESSOR_ID = {kind: Sql(
    f"{OPERATION} WHERE {'t' if kind == 'charge' else 'p'}.processor_id = :processor_id"
    f" AND t.connector = :connector AND t.kind IN {kinds} ORDER BY t.created_at DESC LIMIT 1")
    for kind, kinds in _KINDS.items()}
# Matches once the id is there (a retry of the same attempt records it again); never while
# the attempt is not pending, nor over another id.
_RECORD_PROCESSOR_ID = Sql("UPDATE transactions SET processor_id = :processor_id, updated_at = :now"
                           " WHERE id = :id AND status = 'pending'"
                           " AND (processor_id IS NULL OR processor_id = :processor_id)")
# The attempt consumes the card token it charges, in its own transaction: a request refused
# by its Idempotency-Key, a non-processable intent or a lost race rolls back and leaves the
# token redeemable.
REDEEM_WHERE = "id = :vault_id AND used_at IS NULL AND expires_at > :now"
_REDEEM_TOKEN = Sql(f"UPDATE vault_cards SET used_at = :now WHERE {REDEEM_WHERE}")
# The CVC may be kept only until the authorization (SPEC §5): it goes with the outcome, in
# the same transaction (or statement), whoever records it — the request, a reconciler, a
# processor's notification.
DROP_CVC = "UPDATE vault_cards SET cvc_sealed = NULL WHERE id = {vault_id} AND cvc_sealed IS NOT NULL"
_DROP_ATTEMPT_CVC = Sql(DROP_CVC.format(vault_id=":vault_id"))

# Idempotency keys (SPEC §3). A claim is made in the transaction of the change it guards.
# Each claim and read has a second form for the window after migration 0019, which also
# finds the key's hex spelling (``old_key``, storage/idempotency_forms.py).
_KEY = "merchant_id = :merchant_id AND idempotency_key = :key"
_KEY_COLUMNS = "merchant_id, idempotency_key, request_hash, state, locked_at, created_at, resource_id"
_KEY_ROW = ":key, :request_hash, 'in_progress', :now, :now, :resource_id"
_INSERT_KEY = {
    False: Sql(f"INSERT INTO idempotency_keys ({_KEY_COLUMNS}) VALUES (:merchant_id, {_KEY_ROW})"
               " ON CONFLICT DO NOTHING"),
    True: Sql(f"INSERT INTO idempotency_keys ({_KEY_COLUMNS})"
              f" SELECT {MERCHANT_SELECTED.format(merchant='merchant_id')}, {_KEY_ROW}"
              f" WHERE {OLD_KEY_ABSENT.format(merchant='merchant_id', old_key='old_key')} ON CONFLICT DO NOTHING"),
}
_KEY_ROW_COLUMNS = "idempotency_key, request_hash, state, locked_at, response_status, response_body, resource_id"
# Both spellings can be there only if an old and a new worker claimed the key at once
# (docs/api.md): the first claim is the request's.
FIND_KEY = {
    False: Sql(f"SELECT {_KEY_ROW_COLUMNS} FROM idempotency_keys WHERE {_KEY}"),
    True: Sql(f"SELECT {_KEY_ROW_COLUMNS} FROM idempotency_keys"
              f" WHERE {EITHER_SPELLING.format(merchant='merchant_id', key='key', old_key='old_key')}"
              " ORDER BY created_at LIMIT 1"),
}
_COMPLETE_KEY = Sql("UPDATE idempotency_keys SET state = 'done', response_status = :status,"
                    f" response_body = :body WHERE {_KEY} AND state = 'in_progress'")
_STORED_ANSWER = Sql(f"SELECT response_status, response_body FROM idempotency_keys WHERE {_KEY} AND state = 'done'")
_PRUNE_KEYS = Sql("DELETE FROM idempotency_keys WHERE created_at < :before AND state = 'done'")


def _queue_kind(kind: str) -> str:
    """The reconciler queue's kind for an operation: an authorization is checked as a charge."""
    return "charge" if kind == "authorization" else kind


def existing_key(row: Row, claim: KeyClaim) -> ExistingKey:
    """The key's row as found by ``claim`` (under either spelling), abandoned or not
    (:func:`claim_abandoned`)."""
    body = row["response_body"]
    in_hex = found_in_hex(row, claim)
    found = ExistingKey(request_hash_in_letters(row, in_hex), row["state"], row["locked_at"], row["response_status"],
                        None if body is None else bytes(body), row["resource_id"], in_hex=in_hex)
    return replace(found, abandoned=True) if claim_abandoned(found, claim) else found


def _card_params(new: NewAttempt) -> dict[str, Any]:
    """The attempt's card columns (``ATTEMPT_CARD``): a summary, never the number."""
    card = new.card
    return {"brand": card["brand"], "last4": card["last4"], "exp_month": card["expMonth"],
            "exp_year": card["expYear"], "fingerprint": new.card_fingerprint, "vault_id": new.vault_id}


def _attempt_outcome_params(outcome: Outcome) -> tuple[Sql, dict[str, Any]]:
    """The attempt's settling statement (``SUCCEED``/``FAIL``) and its values."""
    if outcome.status == "succeeded":
        return _SUCCEED_ATTEMPT, {"auth_code": outcome.auth_code, "processor_id": outcome.processor_id}
    return _FAIL_ATTEMPT, {"decline_code": outcome.decline_code, "error_code": outcome.error_code,
                           "error_message": outcome.error_message, "processor_id": outcome.processor_id}


def refusal_to_begin(why: Row | None, new: NewAttempt) -> StoreRefusal | None:
    """What stands in the way of an attempt (``_WHY_NOT_BEGIN``'s row); None: nothing now."""
    if why is None or why["status"] is None:
        return IntentMissing()
    status = why["status"]
    if status == "failed" and why["failed_attempts"] >= new.max_failed_attempts:
        return TooManyFailures()
    if status not in ("created", "failed"):
        return IntentNotInStatus(status)
    if new.vault_id is not None and not why["token_ok"]:
        return TokenSpent()
    if why["in_flight"]:
        return AttemptInFlight()
    return None


# References bound into one settlement look-up (settled_records).
_REFERENCES_PER_STATEMENT = 900


class SqlPaymentStore(HoldOperations, RefundOperations, ReconcileQueue, LateOutcomes, ABC):
    """:class:`~paygate_server.storage.port.PaymentStore`, one transaction per change."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._hex_until: int | None = None  # read once (storage/idempotency_forms.py)

    @abstractmethod
    async def _lock_intent(self, conn: Connection, intent_id: str) -> None:
        """Serialize the writers of one intent: each database says how (this form alone,
        on PostgreSQL, would race a one-statement settle into a deadlock)."""

    # --- idempotency keys, inside the change's transaction ---------------------------

    async def _old_key(self, conn: Connection, claim: KeyClaim) -> dict[str, str]:
        """``{"old_key": …}``, the key's hex spelling, while a claim must probe it; else ``{}``."""
        if self._hex_until is None:
            self._hex_until = await hex_written_until(conn)
        old = old_spelling(claim, self._hex_until)
        return {} if old is None else {"old_key": old}

    async def _find_key(self, conn: Connection, claim: KeyClaim) -> ExistingKey | None:
        """The key's row under either spelling, abandoned or not; None: free."""
        old = await self._old_key(conn, claim)
        row = await fetch_one(conn, FIND_KEY[bool(old)], merchant_id=claim.merchant_id, key=claim.key, **old)
        return None if row is None else existing_key(row, claim)

    async def _claim(self, conn: Connection, claim: KeyClaim, resource_id: str | None = None) -> ExistingKey | None:
        """Claim the key (naming ``resource_id``, what the request begins, when it is not the
        intent of the request's body); None: claimed. Otherwise the key's row, for the
        endpoint to judge or, abandoned, for the operation to answer from."""
        old = await self._old_key(conn, claim)
        insert = {"merchant_id": claim.merchant_id, "key": claim.key, "request_hash": claim.request_hash,
                  "resource_id": resource_id, **old}
        if await execute(conn, _INSERT_KEY[bool(old)], **insert, now=now_us()):
            return None
        existing = await self._find_key(conn, claim)
        if existing is None:  # pruned between the insert and the read: claim it now
            await execute(conn, _INSERT_KEY[bool(old)], **insert, now=now_us())
        return existing

    async def _complete(self, conn: Connection, claim: KeyClaim, status: int, body: bytes) -> bool:
        """Store the answer of a claimed key, unless someone already did (first writer wins)."""
        return await execute(conn, _COMPLETE_KEY, merchant_id=claim.merchant_id, key=claim.key,
                             status=status, body=claim.seal(body)) == 1

    async def _answer(self, conn: Connection, answer: AnswerSpec | None, row: Row | None) -> bool:
        """Store the request's answer, rendered from the changed ``row``, with the change.
        False: no answer to store (or no row), or one was stored already."""
        if answer is None or row is None:
            return False
        return await self._complete(conn, answer.claim, 200, answer.render(row))

    async def change_with_key(self, claim: KeyClaim | None,
                              change: Callable[[Connection], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes] | ExistingKey:
        """Any other one-transaction change (e.g. creating a webhook endpoint) under a key:
        the claim, the change and its answer ``(status, body)`` commit together."""
        async with self._db.write() as conn:
            if claim is not None and (existing := await self._claim(conn, claim)) is not None:
                return existing
            status, body = await change(conn)
            if claim is not None:
                await self._complete(conn, claim, status, body)
            return status, body

    async def find_key(self, claim: KeyClaim) -> ExistingKey | None:
        async with self._db.read_one() as conn:
            return await self._find_key(conn, claim)

    async def store_answer(self, claim: KeyClaim, status: int, body: bytes) -> bool:
        """Store an answer for the key: a fresh row, or the ``in_progress`` claim's (first
        writer wins). False: an answer was there already."""
        async with self._db.write() as conn:
            await self._claim(conn, claim)
            return await self._complete(conn, claim, status, body)

    async def stored_answer(self, claim: KeyClaim) -> tuple[int, bytes] | None:
        async with self._db.read_one() as conn:
            row = await fetch_one(conn, _STORED_ANSWER, merchant_id=claim.merchant_id, key=claim.key)
        return None if row is None else (row["response_status"], bytes(row["response_body"]))

    async def prune_keys(self, created_before: int) -> int:
        async with self._db.write() as conn:
            return await execute(conn, _PRUNE_KEYS, before=created_before)

    # --- intents ----------------------------------------------------------------------

    async def create_intent(self, row: Row, claim: KeyClaim | None, answer: bytes) -> ExistingKey | None:
        async with self._db.write() as conn:
            if claim is not None and (existing := await self._claim(conn, claim)) is not None:
                return existing
            await execute(conn, INSERT_INTENT, **row)
            if claim is not None:
                await self._complete(conn, claim, 201, answer)
        return None

    async def get_intent(self, merchant_id: str, intent_id: str) -> Row | None:
        async with self._db.read_one() as conn:
            return await fetch_one(conn, _GET_INTENT, intent_id=intent_id, merchant_id=merchant_id)

    async def checkout_intent(self, secret_hash: str) -> tuple[Row, int] | None:
        async with self._db.read_one() as conn:
            found = await fetch_one(conn, _CHECKOUT_INTENT, secret_hash=secret_hash)
        if found is None:
            return None
        row = dict(found)
        return row, int(row.pop("checkout_tokenizations"))

    async def list_intents(self, merchant_id: str, *, limit: int, starting_after: str | None,
                           status: str | None) -> tuple[list[Row], bool]:
        """Newest first; a cursor is the last id of the previous page."""
        t = payment_intents
        query = select(t).where(t.c.merchant_id == merchant_id)
        if status is not None:
            query = query.where(t.c.status == status)
        async with self._db.read() as conn:
            if starting_after is not None:
                cursor = (await conn.execute(select(t.c.created_at, t.c.id).where(
                    t.c.id == starting_after, t.c.merchant_id == merchant_id))).first()
                if cursor is None:
                    return [], False
                query = query.where(or_(t.c.created_at < cursor.created_at,
                                        and_(t.c.created_at == cursor.created_at, t.c.id < cursor.id)))
            query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
            rows: list[Row] = [dict(r._mapping) for r in await conn.execute(query)]
        return rows[:limit], len(rows) > limit

    async def cancel_intent(self, merchant_id: str, intent_id: str, answer: AnswerSpec | None) -> Row | ExistingKey:
        async with self._db.write() as conn:
            if answer is not None and (existing := await self._claim(conn, answer.claim)) is not None:
                return existing
            row = await fetch_one(conn, _CANCEL, intent_id=intent_id, merchant_id=merchant_id, now=now_us())
            if row is None:
                current = await fetch_one(conn, _GET_INTENT, intent_id=intent_id, merchant_id=merchant_id)
                raise IntentMissing() if current is None else IntentNotInStatus(current["status"])
            await self._answer(conn, answer, row)
            return row

    # --- charge attempts --------------------------------------------------------------

    async def why_not_begin(self, conn: Connection, new: NewAttempt) -> StoreRefusal | None:
        why = await fetch_one(conn, _WHY_NOT_BEGIN, intent_id=new.intent_id, merchant_id=new.merchant_id,
                              vault_id=new.vault_id, now=now_us())
        return refusal_to_begin(why, new)

    async def begin_attempt(self, new: NewAttempt, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey:
        """Move the intent to ``in_progress`` and record a ``pending`` attempt with its
        processor reference and its reconciler check, atomically (consuming the card's
        vault token, if it came from one)."""
        async with self._db.write() as conn:
            if claim is not None and (existing := await self._claim(conn, claim)) is not None:
                return existing
            now = now_us()
            row = await fetch_one(conn, _START_PROCESSING, intent_id=new.intent_id, merchant_id=new.merchant_id,
                                  card=jsoncodec.dumps(new.card).decode(), max_failed=new.max_failed_attempts, now=now)
            if row is None:
                raise await self.why_not_begin(conn, new) or IntentNotInStatus("in_progress")
            if new.vault_id is not None and not await execute(conn, _REDEEM_TOKEN, vault_id=new.vault_id, now=now):
                raise TokenSpent()  # used by a concurrent request (or expired) since it was read
            txn_id, reference = new_id("txn"), new_id("ref")
            try:
                inserted = await fetch_one(conn, _INSERT_ATTEMPT, id=txn_id, intent_id=new.intent_id,
                                           reference=reference, connector=new.connector, **_card_params(new), now=now)
            except IntegrityError:  # the partial unique index: another attempt is in flight
                raise AttemptInFlight() from None
            assert inserted is not None
            attempt = Attempt(txn_id, reference, new.intent_id, new.merchant_id, row["amount"], row["currency"],
                              inserted["kind"], connector=new.connector)
            # If this process dies mid-call, the reconciler owns the attempt after the grace period.
            await add_check(conn, "charge", attempt.transaction_id, new.intent_id, new.merchant_id,
                                  now + new.check_after_us, now)
            return row, attempt

    async def settle_attempt(self, attempt: Attempt, outcome: Outcome, *, before: Row | None = None,
                             answer: AnswerSpec | None = None) -> tuple[Row | None, bool]:
        """Record what the processor said about an attempt, once (only an attempt still
        ``pending``/``unknown`` changes, so the request and any number of reconcilers can
        race here). Returns the intent after the change (None: someone settled it first)
        and whether ``answer`` was stored with it."""
        async with self._db.write() as conn:
            if (settled := await self._settle_locked(conn, attempt, _ATTEMPT, outcome)) is None:
                return None, False
            if outcome.status == "unknown":
                return await self._intent(conn, attempt.intent_id, attempt.merchant_id), False
            row = await fetch_one(conn, _SETTLE_PROCESSING, intent_id=attempt.intent_id,
                                  merchant_id=attempt.merchant_id, status=outcome.status,
                                  last_error=outcome.intent_error, failed=int(outcome.status == "failed"),
                                  now=settled[1])
            return row, await self._answer(conn, answer, row)

    async def redeem_token(self, vault_id: str) -> bool:
        """Consume a card token outside an attempt; False if used or expired already."""
        async with self._db.write() as conn:
            return await execute(conn, _REDEEM_TOKEN, vault_id=vault_id, now=now_us()) == 1

    async def attempt_for_check(self, transaction_id: str) -> Row | None:
        async with self._db.read_one() as conn:
            return await fetch_one(conn, _ATTEMPT_FOR_CHECK, id=transaction_id)

    async def record_processor_id(self, transaction_id: str, processor_id: str) -> None:
        """Commit the processor's id of a pending attempt's payment before the step that
        moves money (a connector's checkpoint): a lost answer is then looked up by it.

        Raises :class:`ProcessorIdNotRecorded` when it is not recorded: the attempt is not
        pending any more (a reconciler settled it — a "not found" past its window fails it —
        after the request outlived its in-flight grace, e.g. a process stalled), or it holds
        another id. The connector then sends nothing that moves money: a charge confirmed
        now would be one the gateway has failed, or one looked up under another id."""
        async with self._db.write() as conn:
            if await execute(conn, _RECORD_PROCESSOR_ID, id=transaction_id, processor_id=processor_id,
                             now=now_us()) != 1:
                raise ProcessorIdNotRecorded(transaction_id)

    async def fail_over(self, attempt: Attempt, outcome: Outcome, connector: str,
                        check_after_us: int) -> Attempt | None:
        """Settle an attempt that the processor said charged nothing (``outcome`` failed)
        and record the next one, at ``connector``, in one transaction: the intent stays
        ``in_progress`` and this is not a failure of the card. None: settled by someone
        else meanwhile (nothing written)."""
        async with self._db.write() as conn:
            if (settled := await self._settle_locked(conn, attempt, _ATTEMPT, outcome)) is None:
                return None
            now = settled[1]
            following = Attempt(new_id("txn"), new_id("ref"), attempt.intent_id, attempt.merchant_id,
                                attempt.amount, attempt.currency, attempt.kind, connector=connector)
            await execute(conn, _INSERT_FAILOVER, id=following.transaction_id, reference=following.reference,
                          connector=connector, previous=attempt.transaction_id, now=now)
            await add_check(conn, "charge", following.transaction_id, attempt.intent_id, attempt.merchant_id,
                                  now + check_after_us, now)
            return following

    async def find_operation(self, connector: str, kind: str, reference: str,
                             payment_processor_id: str | None) -> Row | None:
        """The operation a processor's notification is about, among those sent through
        ``connector``: a charge/authorization, capture or void (``OPERATION``'s columns)
        or a refund (:data:`.refunds.REFUND_OPERATION`'s); None if there is none."""
        async with self._db.read_one() as conn:
            if kind == "refund":
                return await fetch_one(conn, REFUND_BY_REFERENCE, reference=reference, connector=connector) \
                    if reference else None
            if reference:
                return await fetch_one(conn, _BY_REFERENCE[kind], reference=reference, connector=connector)
            if payment_processor_id:
                return await fetch_one(conn, _BY_PROCESSOR_ID[kind], processor_id=payment_processor_id,
                                       connector=connector)
            return None

    # --- the settle path shared by every processor operation ---------------------------

    async def _intent(self, conn: Connection, intent_id: str, merchant_id: str) -> Row | None:
        return await fetch_one(conn, _GET_INTENT, intent_id=intent_id, merchant_id=merchant_id)

    async def _settle_locked(self, conn: Connection, attempt: Attempt, read: Sql,
                             outcome: Outcome) -> tuple[Row, int] | None:
        """Take the intent's lock, read the operation (``read``) and settle it once: its row
        and the time written; None: settled by someone else (nothing written). The lock
        first: read before it, a settle committed while this waited would go unseen, and an
        unknown outcome put the settled operation back on the queue."""
        await self._lock_intent(conn, attempt.intent_id)
        txn = await fetch_one(conn, read, id=attempt.transaction_id)
        if txn is None or txn["status"] not in ("pending", "unknown"):
            return None
        now = now_us()
        if not await self._settle_operation(conn, txn, outcome, now):
            return None
        return txn, now

    async def _settle_operation(self, conn: Connection, txn: Row, outcome: Outcome, now: int) -> bool:
        """Write a processor operation's outcome on its row, once (False: settled already),
        or mark it unknown and move its check. An authorization's outcome takes the CVC."""
        kind = _queue_kind(txn["kind"])
        if outcome.status == "unknown":
            await self._defer(conn, kind, _MARK_ATTEMPT_UNKNOWN, txn, outcome, now)
            return True
        sql, params = _attempt_outcome_params(outcome)
        if await execute(conn, sql, id=txn["id"], **params, now=now) != 1:
            return False
        if txn["vault_id"] is not None:  # paid with a checkout token
            await execute(conn, _DROP_ATTEMPT_CVC, vault_id=txn["vault_id"])
        await drop_check(conn, kind, txn["id"])
        return True

    async def _defer(self, conn: Connection, kind: str, mark_unknown: Sql, row: Row, outcome: Outcome,
                     now: int) -> None:
        """An unknown outcome: the operation becomes ``unknown`` (once: the history records
        the change of state, not every check) and its check moves to ``outcome.due_at``."""
        if row["status"] == "pending":
            await execute(conn, mark_unknown, id=row["id"], now=now, **({} if kind == "refund" else {
                "message": outcome.error_message, "processor_id": outcome.processor_id}))
        check = {"kind": kind, "object_id": row["id"], "due_at": outcome.due_at, "checks": outcome.checks,
                 "last_result": outcome.last_result}
        await defer_check(conn, check, row["intent_id"], row["merchant_id"], now)

    # --- the settlement report ------------------------------------------------------

    async def settled_records(self, kind: str, connector: str, references: Sequence[str],
                              start: int, end: int) -> list[Row]:
        """A processor's records for a settlement day: ours with these references, and
        our successes of the day at ``connector`` (charges, captures, or refunds of its
        charges and captures; never an authorization: its capture is what settles)."""
        table = refunds if kind == "refund" else transactions
        found: dict[str, Row] = {}
        references = list(references)
        async with self._db.read() as conn:
            # A day's report can hold more references than one statement may bind (asyncpg:
            # 32,767 parameters; SQLite before 3.32: 999): looked up a slice at a time.
            for at in range(0, len(references), _REFERENCES_PER_STATEMENT):
                chunk = references[at:at + _REFERENCES_PER_STATEMENT]
                for r in await conn.execute(select(table).where(table.c.reference.in_(chunk))):
                    found[r.reference] = dict(r._mapping)
            query = select(table).where(table.c.status == "succeeded", table.c.created_at >= start,
                                        table.c.created_at < end)
            if table is transactions:
                query = query.where(transactions.c.connector == connector, transactions.c.kind == kind)
            else:
                query = query.where(refunds.c.transaction_id.in_(
                    select(transactions.c.id).where(transactions.c.connector == connector)))
            for r in await conn.execute(query):
                found.setdefault(r.reference, dict(r._mapping))
        return list(found.values())


class SqlitePaymentStore(SqlPaymentStore):
    """SQLite: the general form as it is (group commit, the write lock serializes writers)."""

    async def _lock_intent(self, conn: Connection, intent_id: str) -> None:
        """Nothing to take: SQLite's write lock already serializes every writer."""
