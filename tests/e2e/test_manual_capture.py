"""Manual capture over real processes on both databases (SPEC §4, §7): authorize, capture
all or part, refund part of what was captured, void, holds that expire — at the gateway's
TTL (it voids them) and at the processor's (a capture refused because the hold is gone) —
every test card on the manual path, and exactly one operation at the processor when
captures and voids race."""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from paygate_server.processing.connectors import SimulatorConnector
from paygate_server.processing.settlement import reconcile_settlement
from paygate_server.storage import create_database, open_payment_store
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_processing import CARDS, encrypted, process
from tests.support.databases import another_database
from tests.support.signing import SignedClient

HELD = frozenset({"requires_capture", "failed", "canceled", "succeeded"})


def run(stack: Stack, body: Any) -> Any:
    creds = stack.merchant()

    async def go() -> Any:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=40) as http:
            return await body(SignedClient(http, creds))
    return asyncio.run(go())


async def authorized(stack: Stack, shop: SignedClient, amount: int = 5000,
                     number: str = "4242424242424242") -> dict[str, Any]:
    intent = await shop.create_intent(amount=amount, captureMethod="manual")
    assert intent["captureMethod"] == "manual" and intent["amountCapturable"] == 0
    r = await process(shop, intent["paymentIntentId"], encrypted(stack, number))
    assert r.status_code == 200, r.text
    await shop.final_status(intent["paymentIntentId"], until=HELD)
    got = (await shop.get(f"/api/v1/payment/intent/{intent['paymentIntentId']}")).json()
    return got  # type: ignore[no-any-return]


def only_charge(stack: Stack, intent_id: str) -> dict[str, Any]:
    charges = stack.charges_at_processor(intent_id)
    assert len(charges) == 1, charges
    return charges[0]  # type: ignore[no-any-return]


def test_authorize_then_capture_part_then_refund_part(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        held = await authorized(stack, shop, 5000)
        pid = held["paymentIntentId"]
        assert held["status"] == "requires_capture", held
        assert (held["amountCapturable"], held["amountReceived"]) == (5000, 0)
        assert held["card"]["last4"] == "4242"
        at_processor = only_charge(stack, pid)
        assert (at_processor["status"], at_processor["captured"], at_processor["amountCaptured"]) == \
            ("approved", False, 0)
        # Nothing was received yet: nothing to refund.
        r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid})
        assert r.status_code == 409 and r.json()["error"]["code"] == "intent_state_conflict", r.text
        # More than is held: refused, nothing changes.
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 5001})
        assert r.status_code == 400 and r.json()["error"]["param"] == "amount", r.text

        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 3000},
                            idempotency_key="cap-1")
        assert r.status_code == 200, r.text
        captured = r.json()
        assert captured["status"] == "succeeded", captured
        assert (captured["amountCapturable"], captured["amountReceived"]) == (0, 3000)
        again = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 3000},
                                idempotency_key="cap-1")
        assert again.status_code == 200 and again.json() == captured  # the stored answer
        at_processor = only_charge(stack, pid)
        assert (at_processor["captured"], at_processor["amountCaptured"]) == (True, 3000)
        # One capture per authorization: the rest was released.
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
        assert r.status_code == 409, r.text

        r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 3001})
        assert r.status_code == 400, r.text  # more than was received
        r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1000})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        final = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
        assert (final["amountReceived"], final["amountRefunded"]) == (3000, 1000)

        history = (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
        kinds = [e["data"]["kind"] for e in history if e["type"] == "attempt.created"]
        assert kinds == ["authorization", "capture"], kinds
        statuses = [e["data"]["status"] for e in history if e["type"].startswith("payment_intent.")]
        assert statuses == ["created", "in_progress", "requires_capture", "in_progress", "succeeded",
                            "succeeded"], statuses  # the last: the refund raised amountRefunded
    run(stack, body)


def test_capture_of_everything_by_default(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(stack, shop, 2500))["paymentIntentId"]
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
        assert r.status_code == 200 and r.json()["amountReceived"] == 2500, r.text
        assert only_charge(stack, pid)["amountCaptured"] == 2500
    run(stack, body)


def test_authorize_then_void(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(stack, shop))["paymentIntentId"]
        r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid}, idempotency_key="void-1")
        assert r.status_code == 200, r.text
        canceled = r.json()
        assert (canceled["status"], canceled["cancellationReason"]) == ("canceled", "requested"), canceled
        assert (canceled["amountCapturable"], canceled["amountReceived"]) == (0, 0)
        at_processor = only_charge(stack, pid)
        assert (at_processor["voided"], at_processor["captured"]) == (True, False), at_processor
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
        assert r.status_code == 409, r.text
        replay = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid}, idempotency_key="void-1")
        assert replay.json() == canceled
    run(stack, body)


def test_every_test_card_on_the_manual_path(stack: Stack) -> None:
    async def one(shop: SignedClient, number: str) -> tuple[str, dict[str, Any]]:
        return number, await authorized(stack, shop, 1000 + len(number), number)

    async def body(shop: SignedClient) -> list[tuple[str, dict[str, Any]]]:
        return await asyncio.gather(*(one(shop, n) for n in CARDS))

    for number, held in run(stack, body):
        expected, code = CARDS[number]
        pid = held["paymentIntentId"]
        charges = stack.charges_at_processor(pid)
        if expected == "succeeded":
            assert held["status"] == "requires_capture", (number, held)
            assert held["amountCapturable"] == held["amount"]
            assert [(c["status"], c["captured"]) for c in charges] == [("approved", False)], (number, charges)
        else:
            assert held["status"] == "failed", (number, held)
            assert code in (held["lastError"]["declineCode"], held["lastError"]["code"]), (number, held)
            assert [c for c in charges if c["status"] == "approved"] == [], (number, charges)


async def _history_kinds(shop: SignedClient, pid: str) -> list[str]:
    history = (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
    return [e["data"]["kind"] for e in history if e["type"] == "attempt.created"]


def test_100_concurrent_captures_capture_once(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(stack, shop, 10_000))["paymentIntentId"]
        answers = await asyncio.gather(*(shop.post("/api/v1/payment/capture", {"paymentIntentId": pid,
                                                                               "amount": 100 + i})
                                         for i in range(100)))
        won = [r for r in answers if r.status_code == 200]
        assert len(won) == 1 and sorted({r.status_code for r in answers}) == [200, 409], \
            sorted(r.status_code for r in answers)
        amount = won[0].json()["amountReceived"]
        # The processor's records are the oracle: one capture, of the winner's amount.
        charge = only_charge(stack, pid)
        assert (charge["captured"], charge["amountCaptured"]) == (True, amount)
        assert await _history_kinds(shop, pid) == ["authorization", "capture"]
    run(stack, body)


def test_50_concurrent_captures_and_cancels_settle_one(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(stack, shop))["paymentIntentId"]
        ops = ["capture", "cancel"] * 25
        answers = await asyncio.gather(*(shop.post(f"/api/v1/payment/{op}", {"paymentIntentId": pid})
                                         for op in ops))
        won = [(op, r.json()) for op, r in zip(ops, answers, strict=True) if r.status_code == 200]
        assert len(won) == 1 and all(r.status_code in (200, 409) for r in answers)
        [(op, intent)] = won
        charge = only_charge(stack, pid)
        if op == "capture":
            assert intent["status"] == "succeeded" and (charge["captured"], charge["voided"]) == (True, False)
        else:
            assert (intent["status"], intent["cancellationReason"]) == ("canceled", "requested")
            assert (charge["captured"], charge["voided"]) == (False, True)
        assert await _history_kinds(shop, pid) == ["authorization", "capture" if op == "capture" else "void"]
    run(stack, body)


def test_a_capture_whose_answer_is_lost_is_reconciled(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(stack, shop, 4200))["paymentIntentId"]
        stack.set_faults(dropResponseRate=1.0)
        try:
            r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 4000})
        finally:
            stack.set_faults(dropResponseRate=0.0)
        assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text
        final = await shop.final_status(pid)
        assert (final["status"], final["amountRefunded"]) == ("succeeded", 0), final
        got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
        assert got["amountReceived"] == 4000
        assert only_charge(stack, pid)["amountCaptured"] == 4000
    run(stack, body)


def test_refused_on_an_automatic_intent_and_bad_input(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        auto = await shop.create_intent(amount=1000)
        assert auto["captureMethod"] == "automatic"
        pid = auto["paymentIntentId"]
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
        assert r.status_code == 409 and r.json()["error"]["code"] == "intent_state_conflict", r.text
        for bad in ({"paymentIntentId": pid, "amount": 0}, {"paymentIntentId": pid, "amount": "10"},
                    {"paymentIntentId": pid, "amount": 1.5}, {"paymentIntentId": pid, "extra": 1}, {}):
            r = await shop.post("/api/v1/payment/capture", bad)
            assert r.status_code == 400, (bad, r.text)
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": "pi_missing"})
        assert r.status_code == 404, r.text
        r = await shop.post("/api/v1/payment/intent", {"amount": 100, "currency": "USD", "productDetails": {},
                                                       "captureMethod": "later"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "captureMethod", r.text
        held = await authorized(stack, shop)
        r = await process(shop, held["paymentIntentId"], encrypted(stack, "4242424242424242"))
        assert r.status_code == 409, r.text
    run(stack, body)


@pytest.fixture(scope="module")
def short_holds(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway that voids holds after 2 s, on a database of its own. On the module's
    shared one, the other stack's gateway would work the same reconcile queue: woken by
    the void's NOTIFY, it could take the void's check first and send it to its own
    simulator (an operation of the default processor goes to the checking process's
    ``PAYGATE_PROCESSOR_URL``), which knows no such hold — the void then stays unknown
    (seen once in CI on PostgreSQL; docs/operations.md, "One default processor")."""
    data_dir = tmp_path_factory.mktemp("holds")
    with another_database(database_url, data_dir) as url, \
            running_stack(url, data_dir, PAYGATE_AUTHORIZATION_TTL_S="2") as s:
        yield s


def test_a_hold_past_the_gateways_ttl_is_voided(short_holds: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        pid = (await authorized(short_holds, shop))["paymentIntentId"]
        final = await shop.final_status(pid, timeout=30)
        got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
        assert (final["status"], got["cancellationReason"]) == ("canceled", "expired"), got
        assert only_charge(short_holds, pid)["voided"] is True
        kinds = [e["data"]["kind"] for e in (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
                 if e["type"] == "attempt.created"]
        assert kinds == ["authorization", "void"]
        # The gateway says what it did on its own, at its default log level.
        log = (short_holds.data_dir / "gateway.log").read_text()
        assert f"hold of {pid} past PAYGATE_AUTHORIZATION_TTL_S: void begun" in log
        assert re.search(rf"checked void txn_\w+ of {pid} at simulator \(check 1\): void_sent_approved", log), log[-2000:]
    run(short_holds, body)


def test_a_capture_after_the_processors_hold_ended_cancels_expired(stack: Stack) -> None:
    async def body(shop: SignedClient) -> None:
        stack.set_faults(authorizationTtlS=0)  # the simulator's holds end as soon as they are granted
        try:
            pid = (await authorized(stack, shop))["paymentIntentId"]
        finally:
            stack.set_faults()
        assert only_charge(stack, pid)["expired"] is True
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
        assert r.status_code == 200, r.text
        got = r.json()
        assert (got["status"], got["cancellationReason"], got["amountReceived"]) == ("canceled", "expired", 0), got
        assert only_charge(stack, pid)["captured"] is False
    run(stack, body)


def test_settlement_reconciliation_covers_captures(stack: Stack) -> None:
    """The simulator settles the capture (never the authorization); the gateway's records
    agree with its report for these intents."""
    async def body(shop: SignedClient) -> tuple[str, str]:
        captured = (await authorized(stack, shop, 3100))["paymentIntentId"]
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": captured, "amount": 3000})
        assert r.json()["status"] == "succeeded", r.text
        r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": captured, "amount": 500})
        assert r.json()["status"] == "succeeded", r.text
        held = (await authorized(stack, shop, 900))["paymentIntentId"]
        return captured, held

    captured, held = run(stack, body)

    async def reconcile() -> tuple[list[Any], list[Any]]:
        db = create_database(stack.database_url)
        try:
            async with SimulatorConnector(stack.simulator.base_url) as connector:
                today = datetime.now(UTC).date()
                report = await connector.settlement_report(today)
                mismatches, _ = await reconcile_settlement(open_payment_store(db), connector, today)
            return report, mismatches
        finally:
            await db.dispose()

    report, mismatches = asyncio.run(reconcile())
    ours = {captured, held}
    assert sorted((r.kind, r.amount) for r in report if r.payment_intent_id in ours) == \
        [("capture", 3000), ("refund", 500)]
    assert [m for m in mismatches if m.payment_intent_id in ours] == []
