"""Refund phases: validate, reserve + persist, call the processor, record the outcome."""
from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.ids import new_id
from paygate_server.processing.attempts import lock_intent, schedule_check
from paygate_server.processing.connectors import (
    ChargeOutcome,
    Connector,
    RefundRequest,
    RefundResult,
)
from paygate_server.storage.schema import payment_intents as intents
from paygate_server.storage.schema import reconcile_queue, refunds, transactions

if TYPE_CHECKING:
    from paygate_server.http.api import ApiContext
    from paygate_server.state import Gateway

__all__ = ["RefundService", "apply_refund_result", "render_refund"]

_US = 1_000_000


def render_refund(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"refundId": row["id"], "paymentIntentId": row["intent_id"], "amount": row["amount"],
            "currency": row["currency"], "status": row["status"], "reason": row["reason"]}


async def _reserve(conn: AsyncConnection, merchant_id: str, intent_id: str, amount: int | None,
                   reason: str | None, grace_s: float) -> dict[str, Any]:
    await lock_intent(conn, intent_id)
    intent = (await conn.execute(select(intents.c.status, intents.c.amount, intents.c.amount_refunded,
                                        intents.c.currency)
                                 .where(intents.c.id == intent_id, intents.c.merchant_id == merchant_id))).first()
    if intent is None:
        raise ApiError("resource_missing", f"no such payment intent: {intent_id}", param="paymentIntentId")
    if intent.status != "succeeded":
        raise ApiError("intent_state_conflict", f"a payment intent in status {intent.status} cannot be refunded")
    remaining = intent.amount - intent.amount_refunded
    if amount is None:
        amount = remaining
    if amount <= 0 or amount > remaining:
        raise ApiError("parameter_invalid",
                       f"amount must be at most what remains refundable ({remaining})", param="amount")
    # The guard that keeps totals right under concurrency: one conditional statement.
    reserved = await conn.execute(
        update(intents)
        .where(intents.c.id == intent_id, intents.c.status == "succeeded",
               intents.c.amount_refunded + amount <= intents.c.amount)
        .values(amount_refunded=intents.c.amount_refunded + amount, version=intents.c.version + 1,
                updated_at=now_us())
    )
    if reserved.rowcount != 1:
        raise ApiError("parameter_invalid", "amount exceeds what remains refundable", param="amount")
    charge = (await conn.execute(select(transactions.c.id, transactions.c.reference).where(
        transactions.c.intent_id == intent_id, transactions.c.status == "succeeded"))).one()
    now = now_us()
    row = {"id": new_id("re"), "intent_id": intent_id, "merchant_id": merchant_id,
           "transaction_id": charge.id, "reference": new_id("rref"), "amount": amount,
           "currency": intent.currency, "status": "pending", "reason": reason, "error_code": None,
           "created_at": now, "updated_at": now}
    await conn.execute(insert(refunds).values(**row))
    await schedule_check(conn, "refund", row["id"], intent_id, merchant_id, now + int(grace_s * _US))
    return {**row, "charge_reference": charge.reference}


async def apply_refund_result(conn: AsyncConnection, refund_id: str, result: RefundResult, *,
                              schedule: tuple[float, ...], checks: int = 0) -> Mapping[str, Any] | None:
    """Record the processor's answer about a refund, once; None if already settled."""
    row = (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()
    if row is None or row.status not in ("pending", "unknown"):
        return None
    await lock_intent(conn, row.intent_id)
    now = now_us()
    if result.outcome in (ChargeOutcome.UNKNOWN, ChargeOutcome.RETRY, ChargeOutcome.NOT_FOUND):
        if row.status == "pending":
            await conn.execute(update(refunds).where(refunds.c.id == refund_id, refunds.c.status == "pending")
                               .values(status="unknown", updated_at=now))
        delay = schedule[min(checks, len(schedule) - 1)] * random.uniform(0.8, 1.2)
        await schedule_check(conn, "refund", refund_id, row.intent_id, row.merchant_id,
                             now + int(delay * _US), checks=checks, last_result=(result.message or result.outcome.value)[:200])
    else:
        succeeded = result.outcome is ChargeOutcome.APPROVED
        settled = await conn.execute(
            update(refunds).where(refunds.c.id == refund_id, refunds.c.status.in_(("pending", "unknown")))
            .values(status="succeeded" if succeeded else "failed",
                    error_code=None if succeeded else "refund_refused", updated_at=now))
        if settled.rowcount != 1:
            return None
        if not succeeded:  # release the reservation
            await conn.execute(update(intents).where(intents.c.id == row.intent_id).values(
                amount_refunded=intents.c.amount_refunded - row.amount, version=intents.c.version + 1,
                updated_at=now))
        await conn.execute(delete(reconcile_queue).where(
            reconcile_queue.c.kind == "refund", reconcile_queue.c.object_id == refund_id))
    return (await conn.execute(select(refunds).where(refunds.c.id == refund_id))).first()._mapping  # type: ignore[union-attr, return-value]  # written above; RowMapping is keyed str | Column


class RefundService:
    def __init__(self, gateway: Gateway, connector: Connector) -> None:
        self._gateway = gateway
        self.connector = connector

    async def refund(self, ctx: ApiContext, intent_id: str, amount: int | None, reason: str | None) -> Response:
        gateway = self._gateway
        db = gateway.db
        scope = ctx.idempotency
        row = await ctx.first_phase(lambda conn: _reserve(
            conn, ctx.merchant_id, intent_id, amount, reason, gateway.settings.in_flight_grace_s))
        result = await self.connector.refund(RefundRequest(
            reference=row["reference"], charge_reference=row["charge_reference"],
            amount=row["amount"], currency=row["currency"]))
        async with db.write() as conn:
            settled = await apply_refund_result(conn, row["id"], result,
                                                schedule=gateway.settings.reconcile_schedule_s)
            if settled is None:
                settled = (await conn.execute(select(refunds).where(refunds.c.id == row["id"]))).first()._mapping  # type: ignore[union-attr, assignment]  # written above; RowMapping is keyed str | Column
            data = jsoncodec.dumps(render_refund(settled))  # type: ignore[arg-type]  # set just above
            if scope is not None:
                await scope.complete(conn, 200, data)
        gateway.notifier.publish(intent_id)
        return Response(data, 200, media_type="application/json")
