"""Every processor call of an operation that moves money is over by its deadline, counted
from before the operation was begun (processing/calls.py): the reconciler's in-flight grace,
counted from the operation's row, assumes no call can reach the processor after it."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import paygate
from paygate_server import clock
from paygate_server.config import Settings
from paygate_server.processing.connectors import ChargeOutcome
from paygate_server.processing.reconciler import Reconciler
from paygate_server.processing.service import ProcessingService
from paygate_server.refunds.service import RefundService
from paygate_server.storage.schema import reconcile_queue
from tests.server.processing.scripted import ScriptedProcessor
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.signing import SignedClient

DEADLINE_S = 0.3


@pytest.fixture
async def gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """A database of its own: these tests leave operations on the reconciler's queue, which
    a reconciler's pass in another test on the shared one would find."""
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


@pytest.fixture(autouse=True)
def _short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings, "attempt_deadline_s", property(lambda self: DEADLINE_S))


def _use(gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    gw.gateway.refunds = RefundService(gw.gateway, processor)  # type: ignore[arg-type]


async def _pay(gw: InProcessGateway, shop: SignedClient, capture_method: str = "automatic") -> tuple[str, str]:
    pid = (await shop.create_intent(captureMethod=capture_method))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                               exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200, r.text
    return pid, r.json()["status"]


def _slowed(gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """The store's ``method`` takes the whole deadline before it begins (a slow database)."""
    store = gw.gateway.payments
    begin = getattr(store, method)

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(DEADLINE_S)  # the delay being injected, not a wait for something
        return await begin(*args, **kwargs)

    monkeypatch.setattr(store, method, slow)


async def test_a_charge_whose_deadline_passed_while_it_was_begun_is_never_sent(
        gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    _use(gw, processor)
    shop = await gw.new_merchant()
    _slowed(gw, monkeypatch, "begin_attempt")
    pid, status = await _pay(gw, shop)
    assert status == "in_progress"  # unknown: the reconciler finds it never received, and fails it
    assert processor.calls["charge"] == 0
    [check] = [c for c in await gw.gateway.payments.all_checks() if c.intent_id == pid]
    assert check.kind == "charge"


async def test_a_capture_whose_deadline_passed_while_it_was_begun_is_never_sent(
        gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    _use(gw, processor)
    shop = await gw.new_merchant()
    pid, status = await _pay(gw, shop, "manual")
    assert status == "requires_capture"
    _slowed(gw, monkeypatch, "begin_capture")
    r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
    assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text  # the reconciler sends it
    assert processor.sent == []


async def test_a_refund_without_an_answer_is_given_up_at_its_deadline(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED, hang={"refund"})
    _use(gw, processor)
    shop = await gw.new_merchant()
    pid, status = await _pay(gw, shop)
    assert status == "succeeded"
    r = await asyncio.wait_for(shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 500}), 10)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unknown"  # the reconciler asks, and sends it again
    assert processor.calls["refund"] == 1


async def test_a_reconciler_check_is_over_within_its_bound_and_the_row_waits_out_its_lease(
        gw: InProcessGateway) -> None:
    """Another reconciler takes a leased row when the lease ends: by then no call of the
    check that took it may still be on its way, so the check's calls are bounded within it."""
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN)
    _use(gw, processor)
    shop = await gw.new_merchant()
    pid, status = await _pay(gw, shop)
    assert status == "in_progress"
    [check] = await gw.gateway.payments.all_checks()
    async with gw.gateway.db.write() as conn:  # due now
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    processor.hang = {"lookup"}
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    started = clock.now_us()
    report = await asyncio.wait_for(reconciler.run_once(), 10)
    assert report.checked == 0 and processor.calls["lookup"] == 1
    [leased] = await gw.gateway.payments.all_checks()
    assert leased.object_id == check.object_id
    assert leased.due_at - started >= (2 * DEADLINE_S + 30.0) * 1_000_000  # the lease outlasts the check's bound
