"""The store's contract for refunds (storage/port.py), on SQLite and PostgreSQL: reserve the
amount, settle once, release what a refused refund reserved, keep the check of an unknown
one, store the request's answer with the outcome."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest

from paygate_server.clock import now_us
from paygate_server.storage.port import (
    AnswerSpec,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    OverRefund,
)
from tests.server.storage.payment_store_helpers import (
    MINUTE_US,
    REFUNDED,
    REFUSED,
    Shop,
    new_refund,
    render_refund_answer,
    unknown,
)


async def test_full_refund(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    refund = await store.reserve_refund(new_refund(shop, charge.intent_id, None), None)
    assert not isinstance(refund, ExistingKey)
    assert (refund["amount"], refund["currency"], refund["status"], refund["transaction_id"],
            refund["charge_reference"]) == (1999, "USD", "pending", charge.transaction_id, charge.reference)
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 1999
    [check] = [c for c in await shop.checks(charge.intent_id) if c["kind"] == "refund"]
    assert check["object_id"] == refund["id"]
    stored = await store.get_refund(refund["id"])
    assert stored is not None and {k: v for k, v in refund.items()
                                     if k not in ("charge_reference", "connector", "charge_processor_id")} == dict(stored)
    for_check = await store.refund_for_check(refund["id"])
    assert for_check is not None and for_check["charge_reference"] == charge.reference
    with pytest.raises(OverRefund) as over:
        await store.reserve_refund(new_refund(shop, charge.intent_id, 1), None)
    assert over.value.remaining == 0

    settled = await store.settle_refund(refund["id"], REFUNDED)
    assert settled is not None and settled["status"] == "succeeded" and await shop.checks(charge.intent_id) == []
    late = await store.settle_refund(refund["id"], REFUSED)  # settled once: returned as it is
    assert late is not None and dict(late) == dict(settled)
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 1999


async def test_partial_refunds_and_a_refused_one_releases_its_reservation(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    part = await store.reserve_refund(new_refund(shop, charge.intent_id, 500), None)
    assert not isinstance(part, ExistingKey) and part["amount"] == 500
    for too_much in (1500, 0):
        with pytest.raises(OverRefund) as over:
            await store.reserve_refund(new_refund(shop, charge.intent_id, too_much), None)
        assert over.value.remaining == 1499
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 500

    refused = await store.settle_refund(part["id"], REFUSED)
    assert refused is not None and (refused["status"], refused["error_code"]) == ("failed", "refund_refused")
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 0
    assert await shop.checks(charge.intent_id) == []
    rest = await store.reserve_refund(new_refund(shop, charge.intent_id, None), None)
    assert not isinstance(rest, ExistingKey) and rest["amount"] == 1999


async def test_refund_unknown_keeps_its_check(shop: Shop) -> None:
    charge = await shop.paid()
    refund = await shop.store.reserve_refund(new_refund(shop, charge.intent_id, 700), None)
    assert not isinstance(refund, ExistingKey)
    due = now_us() + 5 * MINUTE_US
    row = await shop.store.settle_refund(refund["id"], unknown(due, 1))
    assert row is not None and row["status"] == "unknown"
    [check] = await shop.checks(charge.intent_id)
    assert (check["kind"], check["due_at"], check["checks"], check["last_result"]) == ("refund", due, 1, "timeout")
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 700  # still reserved
    row = await shop.store.settle_refund(refund["id"], REFUNDED)
    assert row is not None and row["status"] == "succeeded" and await shop.checks(charge.intent_id) == []


async def test_an_unknown_refund_outcome_racing_a_settle_leaves_no_check_behind(shop: Shop) -> None:
    refunds = []
    for _ in range(10):
        reserved = await shop.store.reserve_refund(new_refund(shop, (await shop.paid()).intent_id, None), None)
        assert not isinstance(reserved, ExistingKey)
        refunds.append(reserved)
    await asyncio.gather(*(shop.store.settle_refund(refund["id"], outcome) for refund in refunds
                           for outcome in (unknown(now_us() + MINUTE_US, 1), REFUNDED)))
    for refund in refunds:
        assert (await shop.store.get_refund(refund["id"]))["status"] == "succeeded"  # type: ignore[index]
        assert await shop.checks(refund["intent_id"]) == []

async def test_refund_with_a_key_stores_its_answer(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    scope = shop.scope("refund-1", "/api/v1/payment/refund")
    refund = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert not isinstance(refund, ExistingKey)
    assert (await store.find_key(scope.claim)).state == "in_progress"  # type: ignore[union-attr]
    row = await store.settle_refund(refund["id"], REFUNDED, AnswerSpec(scope.claim, render_refund_answer))
    assert row is not None
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200 and scope.open(stored[1]) == render_refund_answer(row)
    again = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert isinstance(again, ExistingKey) and again.state == "done"
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 300  # reserved once


async def test_an_abandoned_refund_claim_names_its_refund_and_reserves_nothing_again(shop: Shop) -> None:
    # The request was cut off after its reservation committed (a crash, a failed write):
    # past the lock timeout, its retry is told which refund it began; none is reserved again.
    store = shop.store
    charge = await shop.paid()
    scope = shop.scope("refund-cut-off", "/api/v1/payment/refund")
    refund = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert not isinstance(refund, ExistingKey)
    running = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert isinstance(running, ExistingKey) and not running.abandoned  # still its holder's: 409
    abandoned = dataclasses.replace(scope.claim, stale_before=now_us() + MINUTE_US)
    again = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), abandoned)
    assert isinstance(again, ExistingKey) and again.abandoned and again.resource_id == refund["id"]
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 300  # reserved once


async def test_refund_refusals(shop: Shop) -> None:
    store = shop.store
    created = await shop.intent()
    scope = shop.scope("refund-refused")
    with pytest.raises(IntentMissing):
        await store.reserve_refund(new_refund(shop, "pi_missing", None), scope.claim)
    with pytest.raises(IntentNotInStatus) as refused:
        await store.reserve_refund(new_refund(shop, created["id"], None), scope.claim)
    assert refused.value.status == "created"
    charge = await shop.paid()
    with pytest.raises(IntentMissing):
        await store.reserve_refund(dataclasses.replace(new_refund(shop, charge.intent_id, None),
                                                       merchant_id="mer_other"), None)
    assert await store.find_key(scope.claim) is None
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 0
    assert await store.settle_refund("re_missing", REFUNDED) is None
    assert await store.get_refund("re_missing") is None
    assert await store.refund_for_check("re_missing") is None
