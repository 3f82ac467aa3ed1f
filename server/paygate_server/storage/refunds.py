"""Refunds (SPEC §4), the store's side: :class:`RefundOperations` is a part of
:class:`~paygate_server.storage.payments.SqlPaymentStore`, whose are the shared steps
(claiming a key, storing the answer, deferring an unknown outcome's check)."""
from __future__ import annotations

from abc import ABC, abstractmethod

from paygate_server.clock import now_us
from paygate_server.ids import new_id
from paygate_server.storage.engine import Database
from paygate_server.storage.port import (
    AnswerSpec,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    KeyClaim,
    NewRefund,
    Outcome,
    OverRefund,
    Row,
)
from paygate_server.storage.reconcile_queue import add_check, drop_check
from paygate_server.storage.statements import Connection, Sql, execute, fetch_one

__all__ = ["REFUND_BY_REFERENCE", "RefundOperations"]

_BY_ID = "id = :intent_id AND merchant_id = :merchant_id"
_REFUND_COLUMNS = "id, intent_id, merchant_id, transaction_id, reference, amount, currency, status, reason," \
                  " error_code, created_at, updated_at, failure_reason"
_REFUNDABLE = Sql(f"SELECT status, amount_received, amount_refunded, currency FROM payment_intents WHERE {_BY_ID}")
_RESERVE = Sql("UPDATE payment_intents SET amount_refunded = amount_refunded + :amount, version = version + 1,"
               " updated_at = :now WHERE id = :intent_id AND status = 'succeeded'"
               " AND amount_refunded + :amount <= amount_received")
_RELEASE = Sql("UPDATE payment_intents SET amount_refunded = amount_refunded - :amount, version = version + 1,"
               " updated_at = :now WHERE id = :intent_id")
# What received the money: a charge, or a capture (refunded at the processor against its
# authorization's reference, where the money was taken).
_RECEIVED = ("FROM transactions t LEFT JOIN transactions p ON p.id = t.parent_id"
             " WHERE t.intent_id = :intent_id AND t.status = 'succeeded' AND t.kind IN ('charge', 'capture')")
_CHARGE = Sql(f"SELECT t.id, COALESCE(p.reference, t.reference) AS reference, t.connector,"
              f" COALESCE(p.processor_id, t.processor_id) AS processor_id {_RECEIVED}")
_INSERT_REFUND = Sql(f"INSERT INTO refunds ({_REFUND_COLUMNS}) VALUES (:id, :intent_id, :merchant_id,"
                     " :transaction_id, :reference, :amount, :currency, 'pending', :reason, NULL, :now, :now, NULL)")
_GET_REFUND = Sql(f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE id = :id")
_SETTLE_REFUND = Sql("UPDATE refunds SET status = :status, error_code = :error_code,"
                     " failure_reason = :failure_reason, updated_at = :now"
                     " WHERE id = :id AND status IN ('pending', 'unknown')")
_MARK_REFUND_UNKNOWN = Sql("UPDATE refunds SET status = 'unknown', updated_at = :now"
                           " WHERE id = :id AND status = 'pending'")
# A refund with what it is sent against: where its money was taken, and how that is named there.
REFUND_OPERATION = ("SELECT r.id, r.intent_id, r.merchant_id, r.reference, r.amount, r.currency, r.status,"
                    " r.created_at, t.connector, COALESCE(p.reference, t.reference) AS charge_reference,"
                    " COALESCE(p.processor_id, t.processor_id) AS charge_processor_id FROM refunds r"
                    " JOIN transactions t ON t.id = r.transaction_id"
                    " LEFT JOIN transactions p ON p.id = t.parent_id")
_REFUND_FOR_CHECK = Sql(f"{REFUND_OPERATION} WHERE r.id = :id")
REFUND_BY_REFERENCE = Sql(f"{REFUND_OPERATION} WHERE r.reference = :reference AND t.connector = :connector")


class RefundOperations(ABC):
    _db: Database

    @abstractmethod
    async def _lock_intent(self, conn: Connection, intent_id: str) -> None: ...

    @abstractmethod
    async def _claim(self, conn: Connection, claim: KeyClaim, resource_id: str | None = None) -> ExistingKey | None: ...

    @abstractmethod
    async def _answer(self, conn: Connection, answer: AnswerSpec | None, row: Row | None) -> bool: ...

    @abstractmethod
    async def _defer(self, conn: Connection, kind: str, mark_unknown: Sql, row: Row, outcome: Outcome,
                     now: int) -> None:
        """Mark the operation unknown (once) and move its check to ``outcome.due_at``."""

    async def reserve_refund(self, new: NewRefund, claim: KeyClaim | None) -> Row | ExistingKey:
        """Reserve the amount on the intent (``amount_refunded + x <= amount_received``, one
        conditional statement) and record a ``pending`` refund with its reference."""
        refund_id = new_id("re")
        async with self._db.write() as conn:
            if claim is not None and (existing := await self._claim(conn, claim, refund_id)) is not None:
                return existing
            await self._lock_intent(conn, new.intent_id)
            intent = await fetch_one(conn, _REFUNDABLE, intent_id=new.intent_id, merchant_id=new.merchant_id)
            if intent is None:
                raise IntentMissing()
            if intent["status"] != "succeeded":
                raise IntentNotInStatus(intent["status"])
            remaining = intent["amount_received"] - intent["amount_refunded"]
            amount = remaining if new.amount is None else new.amount
            if amount <= 0 or amount > remaining:
                raise OverRefund(remaining)
            now = now_us()
            if await execute(conn, _RESERVE, intent_id=new.intent_id, amount=amount, now=now) != 1:
                raise OverRefund(None)
            charge = await fetch_one(conn, _CHARGE, intent_id=new.intent_id)
            assert charge is not None  # a succeeded intent has its succeeded attempt
            refund = {"id": refund_id, "intent_id": new.intent_id, "merchant_id": new.merchant_id,
                      "transaction_id": charge["id"], "reference": new_id("rref"), "amount": amount,
                      "currency": intent["currency"], "reason": new.reason}
            await execute(conn, _INSERT_REFUND, **refund, now=now)
            await add_check(conn, "refund", refund["id"], new.intent_id, new.merchant_id,
                                  now + new.check_after_us, now)
            return {**refund, "status": "pending", "error_code": None, "failure_reason": None, "created_at": now,
                    "updated_at": now, "charge_reference": charge["reference"], "connector": charge["connector"],
                    "charge_processor_id": charge["processor_id"]}

    async def settle_refund(self, refund_id: str, outcome: Outcome, answer: AnswerSpec | None = None) -> Row | None:
        """Record the processor's answer about a refund, once; a refused one releases its
        reservation. Returns the refund as it is afterwards (settled here or before), and
        stores ``answer`` for it in the same transaction."""
        async with self._db.write() as conn:
            row = await fetch_one(conn, _GET_REFUND, id=refund_id)
            if row is None:
                return None
            if row["status"] in ("pending", "unknown"):
                await self._lock_intent(conn, row["intent_id"])
                now = now_us()
                if outcome.status == "unknown":
                    # Read again under the lock: settled while this waited, the refund must
                    # not go back on the queue (the settle below is conditional on its own).
                    current = await fetch_one(conn, _GET_REFUND, id=refund_id)
                    if current is not None and current["status"] in ("pending", "unknown"):
                        await self._defer(conn, "refund", _MARK_REFUND_UNKNOWN, current, outcome, now)
                elif await execute(conn, _SETTLE_REFUND, id=refund_id, status=outcome.status,
                                   error_code=outcome.error_code, failure_reason=outcome.error_message,
                                   now=now) == 1:
                    if outcome.status != "succeeded":
                        await execute(conn, _RELEASE, intent_id=row["intent_id"], amount=row["amount"], now=now)
                    await drop_check(conn, "refund", refund_id)
                row = await fetch_one(conn, _GET_REFUND, id=refund_id)
                assert row is not None
            await self._answer(conn, answer, row)
            return row

    async def get_refund(self, refund_id: str) -> Row | None:
        async with self._db.read_one() as conn:
            return await fetch_one(conn, _GET_REFUND, id=refund_id)

    async def refund_for_check(self, refund_id: str) -> Row | None:
        async with self._db.read_one() as conn:
            return await fetch_one(conn, _REFUND_FOR_CHECK, id=refund_id)
