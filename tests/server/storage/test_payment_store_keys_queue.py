"""The store's contract for idempotency keys beyond the claims of the operations, the
reconciler's queue and the settlement report (storage/port.py), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from paygate_server.clock import now_us
from paygate_server.storage.port import ExistingKey, Row
from tests.server.storage.payment_store_helpers import (
    DECLINED,
    MINUTE_US,
    REFUNDED,
    Shop,
    new_refund,
    unknown,
)

# --- idempotency keys ------------------------------------------------------------------


async def test_store_answer_first_writer_wins(shop: Shop) -> None:
    store = shop.store
    scope = shop.scope("answer")
    assert await store.find_key(scope.claim) is None
    assert await store.stored_answer(scope.claim) is None
    assert await store.store_answer(scope.claim, 402, b'{"first":1}') is True
    assert await store.store_answer(scope.claim, 200, b'{"second":1}') is False
    found = await store.find_key(scope.claim)
    assert found is not None and (found.request_hash, found.state, found.response_status) == \
        (scope.request_hash, "done", 402)
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 402 and scope.open(stored[1]) == b'{"first":1}'
    assert stored[1] == found.response_body != b'{"first":1}'  # stored sealed


async def test_store_answer_completes_a_claim(shop: Shop) -> None:
    store = shop.store
    answered = shop.scope("claimed")
    await shop.begin((await shop.intent())["id"], claim=answered.claim)
    assert await store.stored_answer(answered.claim) is None  # in progress: nothing to replay
    assert await store.store_answer(answered.claim, 200, b"{}") is True
    assert await store.stored_answer(answered.claim) is not None
    assert (await store.find_key(answered.claim)).state == "done"  # type: ignore[union-attr]


async def test_prune_keys_drops_answered_keys_only(lone: Shop) -> None:
    store = lone.store
    done, running = lone.scope("done"), lone.scope("running")
    assert await store.store_answer(done.claim, 200, b"{}")
    await lone.begin((await lone.intent())["id"], claim=running.claim)
    assert await store.prune_keys(0) == 0
    assert await store.prune_keys(now_us() + 1) == 1
    assert await store.find_key(done.claim) is None
    assert await store.find_key(running.claim) is not None


async def test_change_with_key(shop: Shop) -> None:
    store = shop.store
    ran: list[object] = []

    async def change(conn: Any) -> tuple[int, bytes]:
        ran.append(conn)
        return 201, b'{"made":1}'

    assert await store.change_with_key(None, change) == (201, b'{"made":1}')
    scope = shop.scope("webhook", "/api/v1/webhook-endpoints")
    assert await store.change_with_key(scope.claim, change) == (201, b'{"made":1}')
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 201 and scope.open(stored[1]) == b'{"made":1}'
    again = await store.change_with_key(scope.claim, change)
    assert isinstance(again, ExistingKey) and again.state == "done" and len(ran) == 2

    async def failing(conn: Any) -> tuple[int, bytes]:
        raise RuntimeError("the change failed")

    broken = shop.scope("broken")
    with pytest.raises(RuntimeError):
        await store.change_with_key(broken.claim, failing)
    assert await store.find_key(broken.claim) is None  # the claim went with the change


# --- the reconciler's queue and the settlement report ----------------------------------


async def test_due_checks_and_next_check_due(lone: Shop) -> None:
    store = lone.store
    assert await store.next_check_due() is None and await store.all_checks() == []
    _, later = await lone.begin((await lone.intent())["id"])
    _, overdue = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(overdue, unknown(1000, 1))
    now = now_us()
    assert await store.next_check_due() == 1000
    [due] = await store.due_checks(now, 10)
    assert (due.kind, due.object_id, due.intent_id, due.merchant_id, due.due_at, due.checks, due.last_result) == \
        ("charge", overdue.transaction_id, overdue.intent_id, lone.merchant_id, 1000, 1, "timeout")
    both = await store.due_checks(now + 2 * MINUTE_US, 10)
    assert [c.object_id for c in both] == [overdue.transaction_id, later.transaction_id]
    assert [c.object_id for c in await store.due_checks(now + 2 * MINUTE_US, 1)] == [overdue.transaction_id]
    assert [c.object_id for c in await store.all_checks()] == [later.transaction_id, overdue.transaction_id]

    refund = await store.reserve_refund(new_refund(lone, (await lone.paid()).intent_id, None), None)
    assert not isinstance(refund, ExistingKey)
    assert [(c.kind, c.object_id) for c in await store.all_checks()][-1] == ("refund", refund["id"])


async def test_lease_check_wins_once(lone: Shop) -> None:
    store = lone.store
    _, attempt = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(attempt, unknown(1000, 1))
    [check] = await store.due_checks(now_us(), 10)
    until = now_us() + MINUTE_US
    leased = await asyncio.gather(*(store.lease_check(check, until) for _ in range(10)))
    assert leased.count(True) == 1
    assert [c.due_at for c in await store.all_checks()] == [until]
    assert await store.due_checks(now_us(), 10) == []
    assert await store.lease_check(check, until + 1) is False  # the check moved on


async def test_settled_records(lone: Shop) -> None:
    store = lone.store
    start = now_us()
    paid = await lone.paid()
    _, declined = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(declined, DECLINED)
    refund = await store.reserve_refund(new_refund(lone, paid.intent_id, 100), None)
    assert not isinstance(refund, ExistingKey)
    await store.settle_refund(refund["id"], REFUNDED)
    end = now_us() + 1

    def refs(records: list[Row]) -> set[str]:
        return {r["reference"] for r in records}

    assert refs(await store.settled_records("charge", "simulator", [], start, end)) == {paid.reference}
    assert refs(await store.settled_records("charge", "simulator", [declined.reference], start, end)) == \
        {paid.reference, declined.reference}
    assert await store.settled_records("charge", "other", [], start, end) == []
    assert await store.settled_records("charge", "simulator", [], end, end + MINUTE_US) == []
    [record] = await store.settled_records("charge", "simulator", [], start, end)
    assert (record["id"], record["status"], record["amount"]) == (paid.transaction_id, "succeeded", 1999)
    assert refs(await store.settled_records("refund", "simulator", [], start, end)) == {refund["reference"]}
    assert await store.settled_records("refund", "other", [], start, end) == []

async def test_check_of_one_operation(lone: Shop) -> None:
    store = lone.store
    _, attempt = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(attempt, unknown(1000, 1))
    check = await store.check_of("charge", attempt.transaction_id)
    assert check is not None and (check.kind, check.object_id, check.due_at, check.checks) == \
        ("charge", attempt.transaction_id, 1000, 1)
    assert [check] == await store.all_checks()
    assert await store.check_of("refund", attempt.transaction_id) is None  # the kind is part of the key
    assert await store.check_of("charge", "txn_nosuchone") is None
    await store.settle_attempt(attempt, DECLINED)
    assert await store.check_of("charge", attempt.transaction_id) is None  # settled: off the queue
