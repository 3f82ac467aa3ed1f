"""Order state transitions: any order of answers and webhooks gives the same order."""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from storefront.states import (
    OrderStatus,
    PaymentState,
    PaymentUpdate,
    apply_refunded_total,
    apply_update,
    decline_message,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_order(total: int = 4700) -> PaymentState:
    return PaymentState(status=OrderStatus.AWAITING_PAYMENT, total=total)


def declined(t: float) -> PaymentUpdate:
    return PaymentUpdate("failed", 0, at(t), "card_declined", "insufficient_funds", "declined", "visa", "9995")


def test_happy_path() -> None:
    state = apply_update(new_order(), PaymentUpdate("created", 0, at(0)))
    assert state.status is OrderStatus.AWAITING_PAYMENT and state.payable
    state = apply_update(state, PaymentUpdate("in_progress", 0, at(1)))
    assert state.status is OrderStatus.PROCESSING and not state.payable
    state = apply_update(state, PaymentUpdate("succeeded", 0, at(2), card_brand="visa", card_last4="4242"))
    assert state.status is OrderStatus.PAID
    assert (state.card_brand, state.card_last4, state.refundable) == ("visa", "4242", 4700)


def test_decline_then_another_card() -> None:
    state = apply_update(new_order(), declined(1))
    assert state.status is OrderStatus.PAYMENT_FAILED and state.payable
    assert decline_message(state) == "Your card was declined: insufficient funds. Please try another card."
    state = apply_update(state, PaymentUpdate("in_progress", 0, at(2)))
    assert state.status is OrderStatus.PROCESSING
    assert state.decline_code is None and decline_message(state) is None
    state = apply_update(state, PaymentUpdate("succeeded", 0, at(3), card_brand="visa", card_last4="4242"))
    assert state.status is OrderStatus.PAID and state.card_last4 == "4242"


def test_a_stale_update_does_not_change_the_status() -> None:
    state = apply_update(new_order(), declined(1))
    state = apply_update(state, PaymentUpdate("in_progress", 0, at(2)))
    # The first attempt's "failed" webhook, delivered late:
    assert apply_update(state, declined(1)).status is OrderStatus.PROCESSING


def test_paid_is_sticky_even_against_a_newer_looking_update() -> None:
    paid = apply_update(new_order(), PaymentUpdate("succeeded", 0, at(5)))
    for late in (PaymentUpdate("in_progress", 0, at(4)), PaymentUpdate("created", 0, at(0)),
                 declined(3), PaymentUpdate("failed", 0, at(9))):
        assert apply_update(paid, late).status is OrderStatus.PAID


def test_canceled_is_final() -> None:
    canceled = apply_update(new_order(), PaymentUpdate("canceled", 0, at(1)))
    assert apply_update(canceled, PaymentUpdate("succeeded", 0, at(2))).status is OrderStatus.CANCELED
    assert not canceled.payable and canceled.refundable == 0


def test_refunds_partial_then_full_and_never_shrink() -> None:
    paid = apply_update(new_order(4700), PaymentUpdate("succeeded", 0, at(1)))
    partial = apply_refunded_total(paid, 1000)
    assert (partial.status, partial.amount_refunded, partial.refundable) == (OrderStatus.PARTIALLY_REFUNDED, 1000, 3700)
    # An older status (amountRefunded 0) does not undo the refund.
    assert apply_update(partial, PaymentUpdate("succeeded", 0, at(1))).amount_refunded == 1000
    full = apply_update(partial, PaymentUpdate("succeeded", 4700, at(6)))
    assert (full.status, full.refundable) == (OrderStatus.REFUNDED, 0)
    assert apply_refunded_total(full, 99999).amount_refunded == 4700  # capped at the total


def test_updates_in_any_order_reach_the_same_state() -> None:
    updates = [PaymentUpdate("created", 0, at(0)), PaymentUpdate("in_progress", 0, at(1)), declined(2),
               PaymentUpdate("in_progress", 0, at(3)), PaymentUpdate("succeeded", 0, at(4)),
               PaymentUpdate("succeeded", 1200, at(5))]
    results = set()
    for order in itertools.permutations(updates):
        state = new_order()
        for update in order:
            state = apply_update(state, update)
        results.add((state.status, state.amount_refunded))
    assert results == {(OrderStatus.PARTIALLY_REFUNDED, 1200)}


def test_an_unknown_status_changes_nothing() -> None:
    state = apply_update(new_order(), PaymentUpdate("requires_action", 0, at(1)))
    assert state.status is OrderStatus.AWAITING_PAYMENT


def test_decline_messages() -> None:
    def message(code: str | None, decline: str | None) -> str | None:
        return decline_message(apply_update(new_order(), PaymentUpdate("failed", 0, at(1), code, decline)))

    assert message("card_declined", "expired_card") == "Your card has expired. Please try another card."
    assert message("card_declined", "something_new") == "Your card was declined. Please try another card."
    assert message("processing_error", None) == (
        "We could not process your card, and you have not been charged. Please try another card.")
    assert decline_message(new_order()) is None


def test_payment_update_from_a_webhook_payload() -> None:
    update = PaymentUpdate.from_payload({
        "paymentIntentId": "pi_1", "status": "failed", "amount": 4700, "currency": "USD",
        "amountRefunded": 0, "updatedAt": "2024-05-01T12:00:01Z",
        "lastError": {"code": "card_declined", "declineCode": "insufficient_funds", "message": "x"},
        "card": {"brand": "visa", "last4": "9995", "expMonth": 12, "expYear": 2034},
    })
    assert (update.status, update.decline_code, update.card_last4, update.updated_at) == (
        "failed", "insufficient_funds", "9995", at(1))
