"""Captures and voids of held authorizations (manual capture, SPEC §4): the store's side.

The same shape as a charge: one transaction moves the intent from ``requires_capture`` to
``in_progress`` and records a ``pending`` operation (``kind`` capture or void, its
authorization as ``parent_id``) with its own processor reference and its reconciler check,
before the processor hears of it; one transaction settles it once. The general form on
both databases: these are not on every payment's path, and PostgreSQL's row lock
(:meth:`_lock_intent`) serializes them with everything else done to the intent.

:class:`HoldOperations` is a part of :class:`~paygate_server.storage.payments.SqlPaymentStore`;
the shared steps (claiming a key, the reconciler's check, settling an operation's row) are
the store's.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from paygate_server.clock import now_us
from paygate_server.ids import new_id
from paygate_server.storage.engine import Database
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    KeyClaim,
    NewCapture,
    NewVoid,
    Outcome,
    OverCapture,
    Row,
)
from paygate_server.storage.reconcile_queue import add_check
from paygate_server.storage.schema import payment_intents
from paygate_server.storage.statements import Connection, Sql, execute, fetch_all, fetch_one

__all__ = ["HoldOperations"]

_COLUMNS = ", ".join(c.name for c in payment_intents.c)
_BY_ID = "id = :intent_id AND merchant_id = :merchant_id"
_HELD = Sql(f"SELECT status, amount_capturable FROM payment_intents WHERE {_BY_ID}")
_AUTHORIZATION = Sql("SELECT id, reference, amount, connector, processor_id FROM transactions WHERE intent_id = :intent_id"
                     " AND kind = 'authorization' AND status = 'succeeded'")
_TO_IN_PROGRESS = Sql("UPDATE payment_intents SET status = 'in_progress', amount_capturable = 0, last_error = NULL,"
                      f" version = version + 1, updated_at = :now WHERE {_BY_ID} AND status = 'requires_capture'"
                      f" RETURNING {_COLUMNS}")
# A capture or void carries its authorization's connector and card summary.
_INSERT_FOLLOW_UP = Sql(
    "INSERT INTO transactions (id, intent_id, merchant_id, status, kind, parent_id, reason, reference, connector,"
    " amount, currency, card_brand, card_last4, card_exp_month, card_exp_year, created_at, updated_at)"
    " SELECT :id, intent_id, merchant_id, 'pending', :kind, id, :reason, :reference, connector, :amount, currency,"
    " card_brand, card_last4, card_exp_month, card_exp_year, :now, :now FROM transactions WHERE id = :parent_id"
)
_FOLLOW_UP = Sql("SELECT t.id, t.status, t.kind, t.reason, t.intent_id, t.merchant_id, t.amount,"
                 " t.vault_id, p.amount AS held FROM transactions t JOIN transactions p ON p.id = t.parent_id"
                 " WHERE t.id = :id")
# Where the intent goes is the domain's (Outcome.intent_status); what that means for the
# amounts is written here once.
_TO = "CAST(:status AS VARCHAR(16))"  # one type for the parameter wherever it appears (PostgreSQL)
_SETTLE_INTENT = Sql(
    "UPDATE payment_intents SET status = :status,"
    f" amount_received = CASE WHEN {_TO} = 'succeeded' THEN :amount ELSE amount_received END,"
    f" amount_capturable = CASE WHEN {_TO} = 'requires_capture' THEN :held ELSE 0 END,"
    f" cancellation_reason = CASE WHEN {_TO} = 'canceled' THEN :reason ELSE cancellation_reason END,"
    " last_error = :last_error, version = version + 1, updated_at = :now"
    f" WHERE {_BY_ID} AND status = 'in_progress' RETURNING {_COLUMNS}"
)
# ``amount_capturable > 0`` says nothing the status does not (only a hold has an amount to
# capture): it is ix_payment_intents_held's predicate on PostgreSQL (migration 0015), which the
# planner uses only for a query that states it.
_EXPIRED = Sql(
    "SELECT i.id, i.merchant_id FROM payment_intents i JOIN transactions t ON t.intent_id = i.id"
    " AND t.kind = 'authorization' AND t.status = 'succeeded'"
    " WHERE i.status = 'requires_capture' AND i.amount_capturable > 0 AND t.updated_at < :before"
    " ORDER BY t.updated_at LIMIT :limit"
)


class HoldOperations(ABC):
    _db: Database

    @abstractmethod
    async def _lock_intent(self, conn: Connection, intent_id: str) -> None: ...

    @abstractmethod
    async def _claim(self, conn: Connection, claim: KeyClaim) -> ExistingKey | None: ...

    @abstractmethod
    async def _answer(self, conn: Connection, answer: AnswerSpec | None, row: Row | None) -> bool:
        """Store the request's answer rendered from ``row`` (False: none, or stored already)."""

    @abstractmethod
    async def _intent(self, conn: Connection, intent_id: str, merchant_id: str) -> Row | None:
        """The intent's row, read on ``conn``."""

    @abstractmethod
    async def _settle_locked(self, conn: Connection, attempt: Attempt, read: Sql,
                             outcome: Outcome) -> tuple[Row, int] | None:
        """Under the intent's lock, settle the operation (``read``) once: its row and the
        time written; None: settled by someone else."""

    async def begin_capture(self, new: NewCapture, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey:
        return await self._begin(new.merchant_id, new.intent_id, "capture", new.amount, None, new.check_after_us,
                                 claim)

    async def begin_void(self, new: NewVoid, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey:
        return await self._begin(new.merchant_id, new.intent_id, "void", None, new.reason, new.check_after_us, claim)

    async def _begin(self, merchant_id: str, intent_id: str, kind: str, amount: int | None, reason: str | None,
                     check_after_us: int, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey:
        ids = {"intent_id": intent_id, "merchant_id": merchant_id}
        async with self._db.write() as conn:
            if claim is not None and (existing := await self._claim(conn, claim)) is not None:
                return existing
            await self._lock_intent(conn, intent_id)
            held = await fetch_one(conn, _HELD, **ids)
            if held is None:
                raise IntentMissing()
            if held["status"] != "requires_capture":
                raise IntentNotInStatus(held["status"])
            capturable = held["amount_capturable"]
            if kind == "capture" and amount is not None and amount > capturable:
                raise OverCapture(capturable)
            authorization = await fetch_one(conn, _AUTHORIZATION, intent_id=intent_id)
            assert authorization is not None  # requires_capture: its authorization succeeded
            # A capture takes what it asks for (all that is held by default); a void, the hold.
            amount = capturable if amount is None or kind == "void" else amount
            now = now_us()
            row = await fetch_one(conn, _TO_IN_PROGRESS, **ids, now=now)
            assert row is not None  # under the intent's lock, in requires_capture
            attempt = Attempt(new_id("txn"), new_id("ref"), intent_id, merchant_id, amount, row["currency"], kind,
                              authorization["reference"], authorization["connector"], authorization["processor_id"])
            await execute(conn, _INSERT_FOLLOW_UP, id=attempt.transaction_id, kind=kind, reason=reason,
                          reference=attempt.reference, amount=amount, parent_id=authorization["id"], now=now)
            await add_check(conn, kind, attempt.transaction_id, intent_id, merchant_id, now + check_after_us,
                                  now)
            return row, attempt

    async def settle_follow_up(self, attempt: Attempt, outcome: Outcome,
                               answer: AnswerSpec | None = None) -> tuple[Row | None, bool]:
        """Record the processor's answer about a capture or void, once, and move its intent
        where ``outcome.intent_status`` says (with the request's answer, if given)."""
        ids = {"intent_id": attempt.intent_id, "merchant_id": attempt.merchant_id}
        async with self._db.write() as conn:
            if (settled := await self._settle_locked(conn, attempt, _FOLLOW_UP, outcome)) is None:
                return None, False
            if outcome.status == "unknown":
                return await self._intent(conn, attempt.intent_id, attempt.merchant_id), False
            txn, now = settled
            row = await fetch_one(conn, _SETTLE_INTENT, **ids, status=outcome.intent_status, amount=txn["amount"],
                                  held=txn["held"], reason=outcome.cancellation_reason or txn["reason"],
                                  last_error=outcome.intent_error, now=now)
            return row, await self._answer(conn, answer, row)

    async def expired_holds(self, authorized_before: int, limit: int) -> list[Row]:
        """Intents in ``requires_capture`` whose authorization is older than the cut-off."""
        async with self._db.read_one() as conn:
            return list(await fetch_all(conn, _EXPIRED, before=authorized_before, limit=limit))
