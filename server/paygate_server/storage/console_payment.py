"""A payment's page in the console (SPEC §12 "Payments"): the intent, its attempts at the
processor, its refunds, its webhook events and their deliveries — read in one transaction,
so the parts are of the same moment.

What is never read: the card's fingerprint, its vault id, its expiry, the intent's client
secret hash — nothing that could help rebuild or re-use a card. An attempt shows the
brand and last 4 only (no BIN: the gateway does not store one). Every query names its
columns; none is ``SELECT *``, so a column added later is not shown by accident.

The timeline is not here: the page calls
``paygate_server.cdc.timeline.whole_timeline(db, intent_id, archive_store)`` (database and
archive, gap-checked) and renders it with ``paygate_server.intents.history.render_history``
— the very events of ``GET /api/v1/payment/intent/{id}/history``.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from paygate_server.storage.engine import Database
from paygate_server.storage.schema import payment_intents, refunds, transactions
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)

__all__ = ["IntentSummary", "AttemptView", "RefundView", "DeliveryView", "WebhookEventView", "PaymentDetail",
           "payment_detail"]

_pi = payment_intents.c
_tx = transactions.c
_rf = refunds.c
_ev = webhook_events.c
_dl = webhook_deliveries.c


@dataclass(frozen=True, slots=True)
class IntentSummary:
    id: str
    merchant_id: str
    status: str
    amount: int
    currency: str
    amount_capturable: int
    amount_received: int
    amount_refunded: int
    capture_method: str
    cancellation_reason: str | None
    description: str | None
    last_error: str | None  # the intent's last error as stored (a JSON object's text)
    failed_attempts: int
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One operation at the processor: a charge, an authorization, or a capture or void of
    one (``parent_id``)."""
    id: str
    kind: str  # charge | authorization | capture | void
    status: str  # pending | unknown | succeeded | failed
    connector: str  # the route: a processor account (pa_…) or the default processor's name
    reference: str  # ours, sent to the processor
    processor_id: str | None  # the processor's id of the operation's object
    parent_id: str | None
    amount: int
    currency: str
    card_brand: str | None
    card_last4: str | None
    auth_code: str | None
    decline_code: str | None
    error_code: str | None
    error_message: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class RefundView:
    id: str
    transaction_id: str
    reference: str
    amount: int
    currency: str
    status: str  # pending | unknown | succeeded | failed
    reason: str | None
    error_code: str | None
    failure_reason: str | None  # a failed one's: the processor's words (processing/settle.py)
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class DeliveryView:
    endpoint_id: str
    url: str
    status: str  # pending | delivered | failed
    attempts: int
    last_status_code: int | None  # the endpoint's last HTTP answer
    last_error: str | None
    next_attempt_at: int
    delivered_at: int | None
    updated_at: int


@dataclass(frozen=True, slots=True)
class WebhookEventView:
    id: str
    type: str
    change_id: int  # the change it tells (one event per change at most)
    object_id: str
    created_at: int
    deliveries: list[DeliveryView]  # one per endpoint it was sent to, by endpoint id


@dataclass(frozen=True, slots=True)
class PaymentDetail:
    intent: IntentSummary
    attempts: list[AttemptView]  # oldest first
    refunds: list[RefundView]  # oldest first
    webhook_events: list[WebhookEventView]  # in the order of the changes they tell


async def payment_detail(db: Database, intent_id: str) -> PaymentDetail | None:
    """Everything the payment's page shows but its timeline; None when there is no such intent."""
    async with db.read() as conn:
        intent = (await conn.execute(select(
            _pi.id, _pi.merchant_id, _pi.status, _pi.amount, _pi.currency, _pi.amount_capturable,
            _pi.amount_received, _pi.amount_refunded, _pi.capture_method, _pi.cancellation_reason,
            _pi.description, _pi.last_error, _pi.failed_attempts, _pi.created_at, _pi.updated_at,
        ).where(_pi.id == intent_id))).first()
        if intent is None:
            return None
        attempts = await conn.execute(select(
            _tx.id, _tx.kind, _tx.status, _tx.connector, _tx.reference, _tx.processor_id, _tx.parent_id,
            _tx.amount, _tx.currency, _tx.card_brand, _tx.card_last4, _tx.auth_code, _tx.decline_code,
            _tx.error_code, _tx.error_message, _tx.created_at, _tx.updated_at,
        ).where(_tx.intent_id == intent_id).order_by(_tx.created_at, _tx.id))
        refund_rows = await conn.execute(select(
            _rf.id, _rf.transaction_id, _rf.reference, _rf.amount, _rf.currency, _rf.status, _rf.reason,
            _rf.error_code, _rf.failure_reason, _rf.created_at, _rf.updated_at,
        ).where(_rf.intent_id == intent_id).order_by(_rf.created_at, _rf.id))
        events = (await conn.execute(select(_ev.id, _ev.type, _ev.change_id, _ev.object_id, _ev.created_at)
                                     .where(_ev.intent_id == intent_id).order_by(_ev.change_id))).all()
        deliveries = (await conn.execute(select(
            _dl.event_id, _dl.endpoint_id, webhook_endpoints.c.url, _dl.status, _dl.attempts, _dl.last_status_code,
            _dl.last_error, _dl.next_attempt_at, _dl.delivered_at, _dl.updated_at,
        ).join(webhook_endpoints, webhook_endpoints.c.id == _dl.endpoint_id)
            .where(_dl.event_id.in_(select(_ev.id).where(_ev.intent_id == intent_id)))
            .order_by(_dl.event_id, _dl.endpoint_id))).all()
        by_event: dict[str, list[DeliveryView]] = {}
        for row in deliveries:
            columns = dict(row._mapping)
            by_event.setdefault(columns.pop("event_id"), []).append(DeliveryView(**columns))
        return PaymentDetail(
            IntentSummary(**intent._mapping),
            [AttemptView(**row._mapping) for row in attempts],
            [RefundView(**row._mapping) for row in refund_rows],
            [WebhookEventView(**row._mapping, deliveries=by_event.get(row.id, [])) for row in events],
        )
