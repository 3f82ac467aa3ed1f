""""Ship then capture" order states: authorized, captured (all or less), voided, expired —
in any order of answers and webhooks, with refunds bounded by what was captured."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from storefront.states import (
    OrderStatus,
    PaymentState,
    PaymentUpdate,
    apply_refunded_total,
    apply_update,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def manual_order(total: int = 9100) -> PaymentState:
    return PaymentState(status=OrderStatus.AWAITING_PAYMENT, total=total, manual_capture=True)


def authorized(t: float, held: int = 9100) -> PaymentUpdate:
    return PaymentUpdate("requires_capture", 0, at(t), card_brand="visa", card_last4="4242",
                         amount_capturable=held, amount_received=0)


def captured(t: float, amount: int, refunded: int = 0) -> PaymentUpdate:
    return PaymentUpdate("succeeded", refunded, at(t), card_brand="visa", card_last4="4242",
                         amount_capturable=0, amount_received=amount)


def canceled(t: float, reason: str | None, *, card: bool = True) -> PaymentUpdate:
    return PaymentUpdate("canceled", 0, at(t), card_brand="visa" if card else None,
                         card_last4="4242" if card else None, amount_capturable=0, amount_received=0,
                         cancellation_reason=reason)


def test_authorized_holds_the_total_and_charges_nothing() -> None:
    state = apply_update(manual_order(), PaymentUpdate("in_progress", 0, at(1)))
    state = apply_update(state, authorized(2))
    assert state.status is OrderStatus.AUTHORIZED and state.status.label == "Authorized"
    assert (state.held, state.received, state.refundable, state.capturable) == (9100, 0, 0, True)
    assert not state.payable


def test_a_partial_capture_is_what_the_customer_paid_and_bounds_refunds() -> None:
    state = apply_update(apply_update(manual_order(), authorized(1)), captured(3, 6500))
    assert state.status is OrderStatus.CAPTURED
    assert (state.held, state.received, state.refundable) == (0, 6500, 6500)
    partial = apply_refunded_total(state, 1000)
    assert (partial.status, partial.refundable) == (OrderStatus.PARTIALLY_REFUNDED, 5500)
    full = apply_refunded_total(partial, 9100)  # more than captured: capped at the capture
    assert (full.status, full.amount_refunded, full.refundable) == (OrderStatus.REFUNDED, 6500, 0)


def test_any_order_of_the_same_updates_gives_the_same_order() -> None:
    updates = [PaymentUpdate("in_progress", 0, at(1)), authorized(2), PaymentUpdate("in_progress", 0, at(3)),
               captured(4, 6500), captured(5, 6500, refunded=500)]
    results = set()
    for order in itertools.permutations(updates):
        state = manual_order()
        for update in order:
            state = apply_update(state, update)
        results.add((state.status, state.received, state.amount_refunded, state.held))
    assert results == {(OrderStatus.PARTIALLY_REFUNDED, 6500, 500, 0)}


def test_a_late_in_progress_never_takes_an_authorized_order_back() -> None:
    state = apply_update(manual_order(), authorized(2))
    # The authorization's own in_progress, late, and a capture in flight: still a hold.
    for late in (PaymentUpdate("in_progress", 0, at(1)), PaymentUpdate("in_progress", 0, at(3))):
        assert apply_update(state, late).status is OrderStatus.AUTHORIZED


def test_voided_and_expired_are_final_and_told_apart() -> None:
    held = apply_update(manual_order(), authorized(1))
    voided = apply_update(held, canceled(2, "requested"))
    expired = apply_update(held, canceled(2, "expired"))
    assert (voided.status, voided.held, voided.refundable) == (OrderStatus.VOIDED, 0, 0)
    assert (expired.status, expired.held) == (OrderStatus.EXPIRED, 0)
    for final in (voided, expired):
        assert apply_update(final, captured(3, 9100)).status is final.status
        assert apply_update(final, authorized(3)).status is final.status


def test_a_bare_canceled_from_the_status_call_is_refined_by_the_event() -> None:
    held = apply_update(manual_order(), authorized(1))
    bare = apply_update(held, PaymentUpdate("canceled", 0, at(2)))  # no reason in a status answer
    assert bare.status is OrderStatus.CANCELED
    assert apply_update(bare, canceled(2, "expired")).status is OrderStatus.EXPIRED
    voided = apply_update(bare, canceled(2, "requested"))
    assert voided.status is OrderStatus.VOIDED
    # ...and never back, nor across.
    assert apply_update(voided, PaymentUpdate("canceled", 0, at(3))).status is OrderStatus.VOIDED
    assert apply_update(voided, canceled(3, "expired")).status is OrderStatus.VOIDED


def test_canceled_before_any_authorization_is_plain_canceled() -> None:
    state = apply_update(manual_order(), canceled(1, "requested", card=False))
    assert state.status is OrderStatus.CANCELED


def test_an_automatic_order_is_unchanged() -> None:
    state = PaymentState(status=OrderStatus.AWAITING_PAYMENT, total=4700)
    paid = apply_update(state, PaymentUpdate("succeeded", 0, at(1), amount_received=4700))
    assert (paid.status, paid.received, paid.refundable) == (OrderStatus.PAID, 4700, 4700)
    # An older gateway says nothing of amountReceived: a paid automatic order took its total.
    assert apply_update(state, PaymentUpdate("succeeded", 0, at(1))).refundable == 4700


def test_a_captured_order_whose_amount_is_not_known_yet_refunds_nothing() -> None:
    """The status call says "succeeded" without amountReceived: a capture may have been for
    less, so nothing is offered for refund until the intent itself says how much."""
    state = apply_update(manual_order(), authorized(1))
    state = apply_update(state, PaymentUpdate("succeeded", 0, at(2)))
    assert state.status is OrderStatus.CAPTURED
    # The authorization's amountReceived was 0: still unknown, not zero-as-fact.
    assert state.refundable == 0
    assert apply_update(state, captured(2, 6500)).refundable == 6500
