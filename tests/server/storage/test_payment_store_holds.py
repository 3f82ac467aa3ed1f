"""The store's contract for manual capture (storage/port.py, storage/holds.py), on SQLite and
PostgreSQL: an authorization holds the amount; a capture or void is begun (intent
``in_progress``, a ``pending`` operation with its own reference, its check) and settled once
with where the intent goes; refunds are bounded by what was received; expired holds are
listed."""
from __future__ import annotations

import asyncio

import pytest

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.storage.port import (
    AnswerSpec,
    AttemptInFlight,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    NewCapture,
    NewVoid,
    Outcome,
    OverCapture,
    OverRefund,
)
from tests.server.storage.payment_store_helpers import (
    APPROVED,
    DECLINED,
    MINUTE_US,
    Shop,
    new_refund,
    render,
    unknown,
)

CAPTURED = Outcome("succeeded", intent_status="succeeded")
VOIDED = Outcome("succeeded", intent_status="canceled")
HOLD_GONE = Outcome("failed", decline_code="authorization_expired", error_code="authorization_expired",
                    intent_status="canceled", cancellation_reason="expired")
_ERROR = jsoncodec.dumps({"code": "processing_error", "declineCode": "x", "message": "refused"}).decode()
REFUSED = Outcome("failed", decline_code="x", error_code="processing_error", intent_error=_ERROR,
                  intent_status="requires_capture")


def capture(shop: Shop, intent_id: str, amount: int | None = None) -> NewCapture:
    return NewCapture(shop.merchant_id, intent_id, amount, MINUTE_US)


def void(shop: Shop, intent_id: str, reason: str = "requested") -> NewVoid:
    return NewVoid(shop.merchant_id, intent_id, reason, MINUTE_US)


async def test_an_authorization_holds_and_a_partial_capture_receives(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held(5000)
    assert (await shop.current(auth.intent_id))["amount_received"] == 0
    with pytest.raises(IntentNotInStatus):  # nothing received: nothing to refund
        await store.reserve_refund(new_refund(shop, auth.intent_id, None), None)
    with pytest.raises(OverCapture) as over:
        await store.begin_capture(capture(shop, auth.intent_id, 5001), None)
    assert over.value.capturable == 5000

    begun = await store.begin_capture(capture(shop, auth.intent_id, 3000), None)
    assert not isinstance(begun, ExistingKey)
    row, cap = begun
    assert (row["status"], row["amount_capturable"]) == ("in_progress", 0)
    assert (cap.kind, cap.amount, cap.charge_reference) == ("capture", 3000, auth.reference)
    assert cap.reference != auth.reference
    [_, txn] = await shop.attempts(auth.intent_id)
    assert (txn["kind"], txn["status"], txn["parent_id"], txn["amount"], txn["card_last4"]) == \
        ("capture", "pending", auth.transaction_id, 3000, "4242")
    assert [(c["kind"], c["object_id"]) for c in await shop.checks(auth.intent_id)] == [("capture", cap.transaction_id)]
    for_check = await store.attempt_for_check(cap.transaction_id)
    assert for_check is not None and (for_check["kind"], for_check["charge_reference"]) == ("capture", auth.reference)

    settled, answered = await store.settle_follow_up(cap, CAPTURED)
    assert settled is not None and not answered
    assert (settled["status"], settled["amount_received"], settled["amount_capturable"]) == ("succeeded", 3000, 0)
    assert await shop.checks(auth.intent_id) == []
    assert await store.settle_follow_up(cap, REFUSED) == (None, False)  # once

    with pytest.raises(OverRefund) as over_refund:
        await store.reserve_refund(new_refund(shop, auth.intent_id, 3001), None)
    assert over_refund.value.remaining == 3000
    refund = await store.reserve_refund(new_refund(shop, auth.intent_id, 1000), None)
    assert not isinstance(refund, ExistingKey)
    # Refunded where the money was taken: against the authorization's reference.
    assert (refund["transaction_id"], refund["charge_reference"]) == (cap.transaction_id, auth.reference)
    for_refund = await store.refund_for_check(refund["id"])
    assert for_refund is not None and for_refund["charge_reference"] == auth.reference


async def test_a_capture_of_everything_by_default_stores_its_answer(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held(2500)
    scope = shop.scope("cap-1", "/api/v1/payment/capture")
    begun = await store.begin_capture(capture(shop, auth.intent_id), scope.claim)
    assert not isinstance(begun, ExistingKey)
    _, cap = begun
    assert cap.amount == 2500
    again = await store.begin_capture(capture(shop, auth.intent_id), scope.claim)
    assert isinstance(again, ExistingKey) and again.state == "in_progress"
    row, answered = await store.settle_follow_up(cap, CAPTURED, AnswerSpec(scope.claim, render))
    assert answered and row is not None
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200 and scope.open(stored[1]) == render(row)


async def test_a_refused_capture_returns_to_requires_capture_and_a_gone_hold_cancels(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held(4000)
    begun = await store.begin_capture(capture(shop, auth.intent_id, 100), None)
    assert not isinstance(begun, ExistingKey)
    row, _ = await store.settle_follow_up(begun[1], REFUSED)
    assert row is not None
    assert (row["status"], row["amount_capturable"], row["last_error"]) == ("requires_capture", 4000, _ERROR)
    begun = await store.begin_capture(capture(shop, auth.intent_id), None)
    assert not isinstance(begun, ExistingKey)
    assert begun[0]["last_error"] is None
    row, _ = await store.settle_follow_up(begun[1], HOLD_GONE)
    assert row is not None
    assert (row["status"], row["cancellation_reason"], row["amount_capturable"], row["amount_received"]) == \
        ("canceled", "expired", 0, 0)
    assert [t["status"] for t in await shop.attempts(auth.intent_id)] == ["succeeded", "failed", "failed"]


async def test_a_void_cancels_with_its_reason_and_an_unknown_one_keeps_its_check(shop: Shop) -> None:
    store = shop.store
    for reason in ("requested", "expired"):
        auth = await shop.held(700)
        begun = await store.begin_void(void(shop, auth.intent_id, reason), None)
        assert not isinstance(begun, ExistingKey)
        _, voiding = begun
        assert (voiding.kind, voiding.amount, voiding.charge_reference) == ("void", 700, auth.reference)
        due = now_us() + MINUTE_US
        row, _ = await store.settle_follow_up(voiding, unknown(due, 1))
        assert row is not None and row["status"] == "in_progress"
        [check] = await shop.checks(auth.intent_id)
        assert (check["kind"], check["due_at"], check["checks"]) == ("void", due, 1)
        assert [t["status"] for t in await shop.attempts(auth.intent_id)] == ["succeeded", "unknown"]
        row, _ = await store.settle_follow_up(voiding, VOIDED)
        assert row is not None
        assert (row["status"], row["cancellation_reason"], row["amount_capturable"]) == ("canceled", reason, 0)
        assert await shop.checks(auth.intent_id) == []


async def test_refusals(shop: Shop) -> None:
    store = shop.store
    automatic = await shop.paid()
    for begin in (store.begin_capture(capture(shop, automatic.intent_id), None),
                  store.begin_void(void(shop, automatic.intent_id), None)):
        with pytest.raises(IntentNotInStatus) as refused:
            await begin
        assert refused.value.status == "succeeded"
    with pytest.raises(IntentMissing):
        await store.begin_capture(capture(shop, "pi_missing"), None)
    auth = await shop.held()
    with pytest.raises(IntentMissing):  # another merchant's
        await store.begin_void(void(dataclass_other(shop), auth.intent_id), None)
    failed = await shop.intent(capture_method="manual")
    _, attempt = await shop.begin(failed["id"])
    await store.settle_attempt(attempt, DECLINED)
    with pytest.raises(IntentNotInStatus):
        await store.begin_capture(capture(shop, failed["id"]), None)


def dataclass_other(shop: Shop) -> Shop:
    return Shop(shop.gw, "mer_someone_else")


async def test_a_capture_racing_a_void_begins_one(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held()
    results = await asyncio.gather(*(
        [store.begin_capture(capture(shop, auth.intent_id), None) for _ in range(4)]
        + [store.begin_void(void(shop, auth.intent_id), None) for _ in range(4)]), return_exceptions=True)
    begun = [r for r in results if isinstance(r, tuple)]
    assert len(begun) == 1, results
    assert all(isinstance(r, IntentNotInStatus | AttemptInFlight) for r in results if not isinstance(r, tuple))
    assert len(await shop.attempts(auth.intent_id)) == 2


async def test_expired_holds(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held()
    paid = await shop.paid()
    listed = {r["id"] for r in await store.expired_holds(now_us() + 1, 100)}
    assert auth.intent_id in listed and paid.intent_id not in listed
    assert auth.intent_id not in {r["id"] for r in await store.expired_holds(now_us() - MINUTE_US, 100)}
    begun = await store.begin_void(void(shop, auth.intent_id, "expired"), None)
    assert not isinstance(begun, ExistingKey)
    assert auth.intent_id not in {r["id"] for r in await store.expired_holds(now_us() + 1, 100)}


async def test_approved_charges_receive_and_authorizations_hold(shop: Shop) -> None:
    paid = await shop.paid()
    row = await shop.current(paid.intent_id)
    assert (row["capture_method"], row["amount_received"], row["amount_capturable"]) == ("automatic", 1999, 0)
    assert (await shop.attempts(paid.intent_id))[0]["kind"] == "charge"
    auth = await shop.held(800)
    assert (await shop.attempts(auth.intent_id))[0]["kind"] == "authorization"
    scope = shop.scope("auth-answer")
    intent = await shop.intent(600, "manual")
    begun = await shop.store.begin_attempt(shop.new_attempt(intent["id"]), scope.claim)
    assert not isinstance(begun, ExistingKey)
    row, answered = await shop.store.settle_attempt(begun[1], APPROVED, before=begun[0],
                                                    answer=AnswerSpec(scope.claim, render))
    assert answered and row is not None and row["status"] == "requires_capture"
    stored = await shop.store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200 and scope.open(stored[1]) == render(row)
