"""An order's status, derived from what the gateway says about its payment intent.

Updates arrive from three places — the answer to ``process``, the status long-poll, and
webhooks — in any order and possibly more than once. ``apply_update`` makes them commute:

- an update older than the last one applied (by the intent's ``updatedAt``) does not
  change the payment status;
- a paid order stays paid (``succeeded`` is final at the gateway; a late
  ``payment_intent.in_progress`` webhook must not "un-pay" it); a canceled one stays canceled;
- ``amountRefunded`` only grows; refunds turn a paid order partially or fully refunded.

"Ship then capture" orders (``captureMethod: "manual"``) add a hold: ``requires_capture``
is *authorized* (nothing charged), ``succeeded`` is *captured* (``amountReceived``, which
may be less than the total), and the end of a hold that was never captured is *voided*
(the shop released it) or *expired* (nobody captured it in time). The canceled family is
final; a bare ``canceled`` (the status call carries no ``cancellationReason``) may later
be told apart by an event that names the reason, never the other way round. An authorized
order moves only forward: a late ``in_progress`` (the authorization's) does not take it
back to *processing*, although a capture or void in flight is ``in_progress`` too — the
order stays *authorized* until the outcome, which is what the hold really is until then.
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
    "ENDED_HOLD_STATUSES",
    "PAID_STATUSES",
    "PAYABLE_STATUSES",
    "OrderStatus",
    "PaymentState",
    "PaymentUpdate",
    "apply_refunded_total",
    "apply_update",
    "decline_message",
    "release_refund",
]


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PROCESSING = "processing"
    PAYMENT_FAILED = "payment_failed"
    PAID = "paid"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELED = "canceled"
    VOIDED = "voided"
    EXPIRED = "expired"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    OrderStatus.AWAITING_PAYMENT: "Awaiting payment",
    OrderStatus.PROCESSING: "Processing",
    OrderStatus.PAYMENT_FAILED: "Payment declined",
    OrderStatus.PAID: "Paid",
    OrderStatus.AUTHORIZED: "Authorized",
    OrderStatus.CAPTURED: "Captured",
    OrderStatus.PARTIALLY_REFUNDED: "Partially refunded",
    OrderStatus.REFUNDED: "Refunded",
    OrderStatus.CANCELED: "Canceled",
    OrderStatus.VOIDED: "Voided",
    OrderStatus.EXPIRED: "Authorization expired",
}

PAID_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.CAPTURED, OrderStatus.PARTIALLY_REFUNDED,
                           OrderStatus.REFUNDED})
PAYABLE_STATUSES = frozenset({OrderStatus.AWAITING_PAYMENT, OrderStatus.PAYMENT_FAILED})
#: A hold that ended without a capture: the customer was never charged.
ENDED_HOLD_STATUSES = frozenset({OrderStatus.VOIDED, OrderStatus.EXPIRED})
_CANCELED = ENDED_HOLD_STATUSES | {OrderStatus.CANCELED}
_STICKY = PAID_STATUSES | _CANCELED

_FROM_INTENT = {
    "created": OrderStatus.AWAITING_PAYMENT,
    "in_progress": OrderStatus.PROCESSING,
    "failed": OrderStatus.PAYMENT_FAILED,
    "succeeded": OrderStatus.PAID,
    "requires_capture": OrderStatus.AUTHORIZED,
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
    #: Only an intent object carries these (the status call does not): None = not said.
    amount_capturable: int | None = None
    amount_received: int | None = None
    cancellation_reason: str | None = None

    @classmethod
    def from_sdk(cls, obj: paygate.PaymentIntent | paygate.PaymentStatus) -> PaymentUpdate:
        error = obj.last_error
        intent = obj if isinstance(obj, paygate.PaymentIntent) else None
        card = intent.card if intent else None
        return cls(
            status=obj.status,
            amount_refunded=obj.amount_refunded,
            updated_at=obj.updated_at,
            error_code=error.code if error else None,
            decline_code=error.decline_code if error else None,
            error_message=error.message if error else None,
            card_brand=card.brand if card else None,
            card_last4=card.last4 if card else None,
            amount_capturable=intent.amount_capturable if intent else None,
            amount_received=intent.amount_received if intent else None,
            cancellation_reason=intent.cancellation_reason if intent else None,
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
    #: "Ship then capture": the card is authorized at checkout and captured on shipping.
    manual_capture: bool = False
    #: What the hold allows to capture now (only while authorized).
    amount_capturable: int = 0
    #: What was charged or captured; None until the gateway says (a paid automatic
    #: order took its total).
    amount_received: int | None = None
    #: The part of ``amount_refunded`` that the processor has not confirmed yet (refunds
    #: the shop made whose status is ``pending`` or ``unknown``): reserved at the gateway,
    #: so not refundable again, but not refunded either until ``refund.succeeded``.
    amount_refund_pending: int = 0

    @property
    def payable(self) -> bool:
        return self.status in PAYABLE_STATUSES

    @property
    def received(self) -> int:
        """What the customer was actually charged (0 unless paid)."""
        if self.status not in PAID_STATUSES:
            return 0
        if self.amount_received is None:  # not said yet: a capture's amount is never guessed
            return 0 if self.manual_capture else self.total
        return self.amount_received

    @property
    def held(self) -> int:
        """What is on hold on the card, not charged (only while authorized)."""
        return self.amount_capturable if self.status is OrderStatus.AUTHORIZED else 0

    @property
    def capturable(self) -> bool:
        return self.status is OrderStatus.AUTHORIZED and self.amount_capturable > 0

    @property
    def refunded_settled(self) -> int:
        """What the processor confirmed as refunded (what the order may call "refunded")."""
        return max(self.amount_refunded - self.amount_refund_pending, 0)

    @property
    def refundable(self) -> int:
        """How much can still be refunded: what was received, less refunds (0 unless paid)."""
        return max(self.received - self.amount_refunded, 0)


def _with_refunds(state: PaymentState, refunded: int) -> PaymentState:
    # Bounded by what was charged: a partial capture received less than the total.
    ceiling = state.received if state.status in PAID_STATUSES else state.total
    refunded = min(max(state.amount_refunded, refunded), ceiling)
    # A refund the processor has not confirmed does not make the order "refunded": the
    # customer would be told the money is back when it may never be.
    settled = max(refunded - state.amount_refund_pending, 0)
    status = state.status
    if status in PAID_STATUSES:
        if settled > 0 and settled >= state.received:
            status = OrderStatus.REFUNDED
        elif settled > 0:
            status = OrderStatus.PARTIALLY_REFUNDED
        else:
            status = OrderStatus.CAPTURED if state.manual_capture else OrderStatus.PAID
    return dataclasses.replace(state, status=status, amount_refunded=refunded)


def _target(state: PaymentState, update: PaymentUpdate) -> OrderStatus | None:
    """The status ``update`` asks for, given the order (None: it changes no status)."""
    new_status = _FROM_INTENT.get(update.status)  # an unknown status changes nothing
    if new_status is OrderStatus.PAID and state.manual_capture:
        return OrderStatus.CAPTURED
    if new_status is OrderStatus.CANCELED:
        if update.cancellation_reason == "expired":
            return OrderStatus.EXPIRED
        # Canceled with a card on it: it was authorized, and the shop released the hold.
        if update.cancellation_reason == "requested" and (update.card_last4 or state.card_last4):
            return OrderStatus.VOIDED
    return new_status


def _may_move(current: OrderStatus, target: OrderStatus) -> bool:
    if current is OrderStatus.CANCELED:
        return target in ENDED_HOLD_STATUSES  # a bare "canceled", told apart later
    if current in _STICKY:
        return False
    if current is OrderStatus.AUTHORIZED:
        # Only forward: a capture or a release. "in_progress" is the authorization's own
        # late echo, or a capture or void in flight: the hold is still what it is.
        return target in PAID_STATUSES or target in _CANCELED
    return True


def apply_update(state: PaymentState, update: PaymentUpdate) -> PaymentState:
    stale = (update.updated_at is not None and state.intent_updated_at is not None
             and update.updated_at < state.intent_updated_at)
    new_status = _target(state, update)
    # Amounts the gateway states are facts about the intent now: taken unless stale.
    if not stale:
        state = dataclasses.replace(
            state,
            amount_capturable=(update.amount_capturable if update.amount_capturable is not None
                               else state.amount_capturable),
            # Zero is "nothing yet", not a fact worth keeping over a capture already seen.
            amount_received=(update.amount_received if update.amount_received
                             else state.amount_received),
        )
    if not stale and new_status is not None and _may_move(state.status, new_status):
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


def release_refund(state: PaymentState, amount: int) -> PaymentState:
    """A refund the shop counted while pending was refused by the processor: the gateway
    released what it had reserved, so the order's refunded total gives it back (the one
    case where it shrinks: a fact about a refund, not an older view of the intent)."""
    return dataclasses.replace(state, amount_refunded=max(state.amount_refunded - amount, 0))


def apply_refunded_total(state: PaymentState, refunded: int, pending: int = 0) -> PaymentState:
    """After a refund the shop made or heard of (``refund.succeeded``): ``refunded`` counts
    every refund not refused, ``pending`` those of them the processor has not confirmed."""
    return _with_refunds(dataclasses.replace(state, amount_refund_pending=pending), refunded)


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
