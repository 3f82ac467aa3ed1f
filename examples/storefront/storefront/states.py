"""An order's status, derived from what the gateway says about its payment intent.

Updates arrive from three places — the answer to ``process``, the status long-poll, and
webhooks — in any order and possibly more than once. ``apply_update`` makes them commute:

- an update older than the last one applied (by the intent's ``updatedAt``) does not
  change the payment status;
- a paid order stays paid (``succeeded`` is final at the gateway; a late
  ``payment_intent.in_progress`` webhook must not "un-pay" it); a canceled one stays canceled;
- ``amountRefunded`` only grows; refunds turn a paid order partially or fully refunded.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import paygate

__all__ = [
    "PAID_STATUSES",
    "PAYABLE_STATUSES",
    "OrderStatus",
    "PaymentState",
    "PaymentUpdate",
    "apply_refunded_total",
    "apply_update",
    "decline_message",
]


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PROCESSING = "processing"
    PAYMENT_FAILED = "payment_failed"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELED = "canceled"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    OrderStatus.AWAITING_PAYMENT: "Awaiting payment",
    OrderStatus.PROCESSING: "Processing",
    OrderStatus.PAYMENT_FAILED: "Payment declined",
    OrderStatus.PAID: "Paid",
    OrderStatus.PARTIALLY_REFUNDED: "Partially refunded",
    OrderStatus.REFUNDED: "Refunded",
    OrderStatus.CANCELED: "Canceled",
}

PAID_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED})
PAYABLE_STATUSES = frozenset({OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED})
_STICKY = PAID_STATUSES | {OrderStatus.CANCELED}

_FROM_INTENT = {
    "created": OrderStatus.AWAITING_PAYMENT,
    "in_progress": OrderStatus.PROCESSING,
    "failed": OrderStatus.PAYMENT_FAILED,
    "succeeded": OrderStatus.PAID,
    "canceled": OrderStatus.CANCELED,
}


@dataclass(frozen=True)
class PaymentUpdate:
    """What one answer or event says about the intent."""

    status: str
    amount_refunded: int | None = None
    updated_at: datetime | None = None
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None

    @classmethod
    def from_sdk(cls, obj: paygate.PaymentIntent | paygate.PaymentStatus) -> PaymentUpdate:
        error = obj.last_error
        card = obj.card if isinstance(obj, paygate.PaymentIntent) else None
        return cls(
            status=obj.status,
            amount_refunded=obj.amount_refunded,
            updated_at=obj.updated_at,
            error_code=error.code if error else None,
            decline_code=error.decline_code if error else None,
            error_message=error.message if error else None,
            card_brand=card.brand if card else None,
            card_last4=card.last4 if card else None,
        )

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> PaymentUpdate:
        """From a webhook's ``data`` (an intent object)."""
        return cls.from_sdk(paygate.PaymentIntent.from_dict(data))


@dataclass(frozen=True)
class PaymentState:
    """The payment part of an order, as stored."""

    status: OrderStatus
    total: int
    amount_refunded: int = 0
    intent_updated_at: datetime | None = None
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None

    @property
    def payable(self) -> bool:
        return self.status in PAYABLE_STATUSES

    @property
    def refundable(self) -> int:
        """How much can still be refunded (0 unless paid)."""
        return self.total - self.amount_refunded if self.status in PAID_STATUSES else 0


def _with_refunds(state: PaymentState, refunded: int) -> PaymentState:
    refunded = min(max(state.amount_refunded, refunded), state.total)
    status = state.status
    if status in PAID_STATUSES:
        if refunded >= state.total:
            status = OrderStatus.REFUNDED
        elif refunded > 0:
            status = OrderStatus.PARTIALLY_REFUNDED
        else:
            status = OrderStatus.PAID
    return dataclasses.replace(state, status=status, amount_refunded=refunded)


def apply_update(state: PaymentState, update: PaymentUpdate) -> PaymentState:
    stale = (update.updated_at is not None and state.intent_updated_at is not None
             and update.updated_at < state.intent_updated_at)
    new_status = _FROM_INTENT.get(update.status)  # an unknown status changes nothing
    if not stale and new_status is not None and state.status not in _STICKY:
        failed = new_status is OrderStatus.PAYMENT_FAILED
        state = dataclasses.replace(
            state,
            status=new_status,
            intent_updated_at=update.updated_at or state.intent_updated_at,
            error_code=update.error_code if failed else None,
            decline_code=update.decline_code if failed else None,
            error_message=update.error_message if failed else None,
            card_brand=update.card_brand or state.card_brand,
            card_last4=update.card_last4 or state.card_last4,
        )
    elif not stale and update.updated_at is not None:
        state = dataclasses.replace(state, intent_updated_at=update.updated_at)
    return _with_refunds(state, update.amount_refunded or 0)


def apply_refunded_total(state: PaymentState, refunded: int) -> PaymentState:
    """After a refund the shop made or heard of (``refund.succeeded``)."""
    return _with_refunds(state, refunded)


_DECLINES = {
    "insufficient_funds": "Your card was declined: insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "The card's security code (CVC) is incorrect.",
    "generic_decline": "Your card was declined.",
}


def decline_message(state: PaymentState) -> str | None:
    """What the customer reads after a failed attempt (None unless failed)."""
    if state.status is not OrderStatus.PAYMENT_FAILED:
        return None
    if state.error_code == "card_declined":
        first = _DECLINES.get(state.decline_code or "", "Your card was declined.")
    else:
        first = "We could not process your card, and you have not been charged."
    return f"{first} Please try another card."
