"""The ``refund`` operation, in phases: validate (the endpoint), reserve the amount and
persist the refund with its reference (with the request's Idempotency-Key claimed in the
same transaction), call the processor, record the outcome once (:mod:`paygate_server.processing.settle`,
the path charges take too) with the request's answer.

A command in (:class:`RefundPayment`), a domain result out (the refund's row).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from paygate_server import jsoncodec
from paygate_server.faults import crash_point
from paygate_server.intents.refusals import refusal_error
from paygate_server.processing.calls import DEADLINE_PASSED, call_at_processor, deadline_for
from paygate_server.processing.connectors import (
    ChargeOutcome,
    Connector,
    RefundRequest,
    RefundResult,
)
from paygate_server.processing.settle import refund_outcome
from paygate_server.refunds.schemas import render_refund
from paygate_server.storage.port import (
    AnswerSpec,
    ExistingKey,
    KeyClaim,
    NewRefund,
    Row,
    StoreRefusal,
)

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["RefundPayment", "RefundService"]

_US = 1_000_000


@dataclass(frozen=True, slots=True)
class RefundPayment:
    merchant_id: str
    intent_id: str
    amount: int | None  # None: what remains refundable
    reason: str | None


def _render_answer(row: Row) -> bytes:
    return jsoncodec.dumps(render_refund(row))


class RefundService:
    def __init__(self, gateway: Gateway, connector: Connector) -> None:
        self._gateway = gateway
        self.connector = connector

    async def refund(self, command: RefundPayment, claim: KeyClaim | None) -> Row | ExistingKey:
        """The refund as recorded (its answer stored with it when ``claim`` is given)."""
        gateway = self._gateway
        store = gateway.payments
        new = NewRefund(command.merchant_id, command.intent_id, command.amount, command.reason,
                        int(gateway.settings.in_flight_grace_s * _US))
        deadline = deadline_for(gateway.settings)
        try:
            reserved = await store.reserve_refund(new, claim)
        except StoreRefusal as refusal:
            raise refusal_error(refusal, command.intent_id, "refunded") from None
        if isinstance(reserved, ExistingKey):
            return await self._resumed(reserved, claim)
        crash_point(gateway.settings.fault_point, "after_refund_commit")
        request = RefundRequest(
            reference=reserved["reference"], charge_reference=reserved["charge_reference"],
            amount=reserved["amount"], currency=reserved["currency"],
            charge_processor_id=reserved["charge_processor_id"])
        try:
            connector = await gateway.processors.connector(reserved["connector"], self.connector)  # where the money was
        except Exception as exc:  # noqa: BLE001 - an account that cannot be used was sent nothing (as a charge's)
            result = RefundResult(request.reference, ChargeOutcome.FAILED,
                                  f"processor account unusable ({type(exc).__name__}): nothing sent")
        else:
            # Bounded like a charge's calls: the reconciler sends it again after the same grace.
            result = await call_at_processor(
                gateway.settings, deadline, partial(connector.refund, request),
                RefundResult(request.reference, ChargeOutcome.UNKNOWN, DEADLINE_PASSED),
                answered_point="after_refund_answered")
        outcome = refund_outcome(result, schedule=gateway.settings.reconcile_schedule_s)
        row = await store.settle_refund(reserved["id"], outcome,
                                        None if claim is None else AnswerSpec(claim, _render_answer))
        assert row is not None  # reserved above; refunds are never deleted
        gateway.notifier.publish(command.intent_id)
        return row

    async def _resumed(self, existing: ExistingKey, claim: KeyClaim | None) -> Row | ExistingKey:
        """A key that was there, for the endpoint to judge — unless it is abandoned (its
        request was cut off after the refund was reserved): then that refund as it is now,
        stored as the key's answer. It is the reconciler's to send or settle; a second
        refund is never reserved under one key."""
        store = self._gateway.payments
        if not existing.abandoned or existing.resource_id is None or claim is None:
            return existing
        row = await store.get_refund(existing.resource_id)
        if row is None:
            return existing
        await store.store_answer(claim, 200, _render_answer(row))
        return row
