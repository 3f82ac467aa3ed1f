"""The store's contract for processor accounts (storage/port.py), on SQLite and PostgreSQL:
the processor's id of a payment is recorded before money moves and kept by every settle;
failover settles an attempt that charged nothing and records the next one at another
account in one transaction; a processor's notification finds its operation by reference
or by the processor's id, only among the operations of that account; a processor's later
word against a settled outcome is recorded once per operation and status, and listed open
first."""
from __future__ import annotations

from dataclasses import replace

import pytest

from paygate_server.clock import now_us
from paygate_server.storage.late_outcomes import mark_handled
from paygate_server.storage.port import LateOutcome, NewCapture, Outcome, ProcessorIdNotRecorded
from tests.server.storage.payment_store_helpers import (
    APPROVED,
    MINUTE_US,
    Shop,
    new_refund,
    unknown,
)

NOTHING_CHARGED = Outcome("failed", error_code="processing_error", error_message="could not connect: nothing sent")


async def test_the_processor_id_is_recorded_while_pending_and_kept_by_the_settle(shop: Shop) -> None:
    store = shop.store
    _, attempt = await shop.begin((await shop.intent())["id"])
    await store.record_processor_id(attempt.transaction_id, "pi_stripe_1")
    await store.record_processor_id(attempt.transaction_id, "pi_stripe_1")  # a retry of the attempt: the same
    with pytest.raises(ProcessorIdNotRecorded):  # once recorded, it stays: nothing goes out under another
        await store.record_processor_id(attempt.transaction_id, "pi_other")
    [row] = await shop.attempts(attempt.intent_id)
    assert row["processor_id"] == "pi_stripe_1"
    await store.settle_attempt(attempt, unknown(0, 1))  # an answer without an id keeps it
    await store.settle_attempt(attempt, APPROVED)
    [row] = await shop.attempts(attempt.intent_id)
    assert (row["status"], row["processor_id"]) == ("succeeded", "pi_stripe_1")
    check = await store.attempt_for_check(attempt.transaction_id)
    assert check is not None and (check["processor_id"], check["connector"]) == ("pi_stripe_1", "simulator")


async def test_an_attempt_settled_before_its_id_is_recorded_refuses_the_id(shop: Shop) -> None:
    """The request outlived its in-flight grace (a stalled process) and a reconciler failed
    the attempt as never received: recording the id now raises, so the connector never sends
    the step that would charge it (ChargeRequest.record_processor_id)."""
    store = shop.store
    _, attempt = await shop.begin((await shop.intent())["id"])
    await store.settle_attempt(attempt, Outcome("failed", error_code="processing_error",
                                                error_message="the processor never received this attempt"))
    with pytest.raises(ProcessorIdNotRecorded):
        await store.record_processor_id(attempt.transaction_id, "pi_stripe_1")
    [row] = await shop.attempts(attempt.intent_id)
    assert (row["status"], row["processor_id"]) == ("failed", None)


async def test_an_outcome_with_the_processors_id_records_it(shop: Shop) -> None:
    _, attempt = await shop.begin((await shop.intent())["id"])
    await shop.store.settle_attempt(attempt, Outcome("succeeded", auth_code="A1", processor_id="8815"))
    [row] = await shop.attempts(attempt.intent_id)
    assert row["processor_id"] == "8815"


async def test_failover_settles_the_attempt_and_records_the_next_at_another_account(shop: Shop) -> None:
    store = shop.store
    _, first = await shop.begin((await shop.intent())["id"])
    second = await store.fail_over(first, NOTHING_CHARGED, "pa_second", MINUTE_US)
    assert second is not None
    assert (second.connector, second.kind, second.amount) == ("pa_second", "charge", first.amount)
    assert second.reference != first.reference and second.transaction_id != first.transaction_id
    intent = await shop.current(first.intent_id)
    assert (intent["status"], intent["failed_attempts"]) == ("in_progress", 0)  # not the card's failure
    rows = {r["id"]: r for r in await shop.attempts(first.intent_id)}
    assert (rows[first.transaction_id]["status"], rows[first.transaction_id]["connector"]) == ("failed", "simulator")
    assert (rows[second.transaction_id]["status"], rows[second.transaction_id]["connector"]) == ("pending", "pa_second")
    assert rows[second.transaction_id]["card_last4"] == rows[first.transaction_id]["card_last4"]
    assert [c["object_id"] for c in await shop.checks(first.intent_id)] == [second.transaction_id]
    # Settled already (a reconciler got there first): nothing is written.
    assert await store.fail_over(first, NOTHING_CHARGED, "pa_third", MINUTE_US) is None
    assert len(await shop.attempts(first.intent_id)) == 2
    row, _ = await store.settle_attempt(second, APPROVED)
    assert row is not None and row["status"] == "succeeded"


async def test_a_notification_finds_its_operation_by_reference_or_processor_id_at_its_account(shop: Shop) -> None:
    store = shop.store
    auth = await shop.held(5000)
    with pytest.raises(ProcessorIdNotRecorded):  # settled: not recorded any more
        await store.record_processor_id(auth.transaction_id, "pi_1")
    assert (await store.find_operation("simulator", "charge", auth.reference, None)) is not None
    assert await store.find_operation("pa_elsewhere", "charge", auth.reference, None) is None
    assert await store.find_operation("simulator", "capture", auth.reference, None) is None  # another kind

    _, pending = await shop.begin((await shop.intent())["id"])
    await store.record_processor_id(pending.transaction_id, "pi_2")
    found = await store.find_operation("simulator", "charge", "", "pi_2")
    assert found is not None and found["id"] == pending.transaction_id and found["status"] == "pending"

    begun = await store.begin_capture(NewCapture(shop.merchant_id, auth.intent_id, None, MINUTE_US), None)
    assert not isinstance(begun, tuple) or begun[1].kind == "capture"
    await store.settle_attempt(pending, APPROVED)
    paid = await shop.paid()
    refund = await store.reserve_refund(new_refund(shop, paid.intent_id, 500), None)
    assert isinstance(refund, dict)
    found = await store.find_operation("simulator", "refund", refund["reference"], None)
    assert found is not None and (found["id"], found["charge_reference"]) == (refund["id"], paid.reference)
    assert await store.find_operation("pa_elsewhere", "refund", refund["reference"], None) is None
    assert await store.find_operation("simulator", "refund", "", "pi_2") is None  # a refund needs its reference


async def test_a_late_outcome_is_recorded_once_per_operation_and_status_and_listed_open_first(shop: Shop) -> None:
    store = shop.store
    paid = await shop.paid()
    late = LateOutcome(kind="refund", object_id=f"re_{paid.transaction_id}", intent_id=paid.intent_id,
                       merchant_id=shop.merchant_id, connector="pa_1", gateway_status="succeeded",
                       processor_status="failed", processor_text="Refused by the scheme", received_at=now_us())
    assert await store.record_late_outcome(late) is True
    assert await store.record_late_outcome(late) is False  # the same notification again: nothing more
    capture = replace(late, kind="capture", object_id=paid.transaction_id, received_at=late.received_at + 1)
    assert await store.record_late_outcome(capture) is True  # newer: listed first

    def mine(rows: list[LateOutcome]) -> list[LateOutcome]:
        return [r for r in rows if r.intent_id == paid.intent_id]

    listed = mine(await store.late_outcomes(limit=10_000))
    assert [(r.object_id, r.gateway_status, r.processor_status, r.processor_text, r.handled_at) for r in listed] == [
        (paid.transaction_id, "succeeded", "failed", "Refused by the scheme", None),
        (late.object_id, "succeeded", "failed", "Refused by the scheme", None)]
    async with shop.gw.gateway.db.write() as conn:
        assert await mark_handled(conn, listed[0].id, "op_1", now_us()) is True
        assert await mark_handled(conn, listed[0].id, "op_2", now_us()) is False  # handled already
    listed = mine(await store.late_outcomes(limit=10_000))
    assert [(r.object_id, r.handled_by) for r in listed] == [(late.object_id, None), (paid.transaction_id, "op_1")]
