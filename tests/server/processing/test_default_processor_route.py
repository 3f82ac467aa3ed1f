"""An operation routed to the default processor is asked about at a default of its kind only
(SPEC §7: an unknown outcome goes to the reconciler at the same account, never to another
processor).

The payments of merchants without accounts are recorded by the default connector's name
(``simulator``, ``stripe``, …). A process whose ``PAYGATE_PROCESSOR_URL`` is a processor of
another kind (the default moved while payments were open, or one host configured apart)
must not ask its own default instead: Stripe answers a look-up of an attempt it has no
payment intent for "not found", and past the safety window that fails a charge the
simulator took — the customer, told it failed, pays again. It is not asked; the attempt
stays ``unknown`` until a process with a default of its kind asks."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

import paygate
from paygate_server.processing.connectors.stripe import StripeConnector
from paygate_server.processing.reconciler import Reconciler
from paygate_server.processing.service import CapturePayment, Processed
from paygate_server.simulator.testing import TestCards, start_simulator
from paygate_server.storage.schema import reconcile_queue, transactions
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.signing import SignedClient

_HOUR_US = 3600 * 1_000_000


@pytest.fixture
async def simulated(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """A gateway whose default processor is a real simulator, on a database of its own (a
    reconciler pass sees only this test's checks)."""
    with start_simulator(tmp_path / "simulator") as url:
        async with running_gateway(settings_for(fresh_database_url, tmp_path, processor_url=url)) as gw:
            yield gw


def _stripe() -> StripeConnector:
    """A default of another kind. Nothing listens on its address: whatever it would be
    asked, no request of it could reach a Stripe."""
    return StripeConnector("sk_test_elsewhere", "whsec_elsewhere", api_base="http://127.0.0.1:9")


async def _pay(gw: InProcessGateway, shop: SignedClient, number: str, **intent: str) -> tuple[str, str]:
    pid: str = (await shop.create_intent(**intent))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=number, exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200, r.text
    return pid, str(r.json()["status"])


async def _attempts(gw: InProcessGateway, pid: str) -> list[tuple[str, str, str]]:
    async with gw.gateway.db.read() as conn:
        rows = await conn.execute(select(transactions.c.kind, transactions.c.status, transactions.c.connector)
                                  .where(transactions.c.intent_id == pid).order_by(transactions.c.created_at))
        return [(r.kind, r.status, r.connector) for r in rows]


async def _past_the_window(gw: InProcessGateway, pid: str) -> None:
    """The attempt an hour old (past the not-found window) and its check due now."""
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(transactions).where(transactions.c.intent_id == pid)
                           .values(created_at=transactions.c.created_at - _HOUR_US))
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))


async def test_a_default_of_another_kind_never_fails_the_simulators_lost_charge(simulated: InProcessGateway) -> None:
    gw = simulated
    shop = await gw.new_merchant()
    pid, status = await _pay(gw, shop, TestCards.DROPPED_ANSWER)  # approved at the simulator, answer lost
    assert status == "in_progress"
    assert await _attempts(gw, pid) == [("charge", "unknown", "simulator")]
    await _past_the_window(gw, pid)

    stripe = _stripe()
    try:
        await Reconciler(gw.gateway.payments, stripe, gw.gateway.settings).run_once()
    finally:
        await stripe.aclose()
    # Not "never received" on Stripe's word: the simulator took it.
    assert await _attempts(gw, pid) == [("charge", "unknown", "simulator")]
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"

    # Where it went, it is found.
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    await gw.gateway.reconciler.run_once()
    assert await _attempts(gw, pid) == [("charge", "succeeded", "simulator")]


async def test_a_capture_is_not_sent_to_a_default_of_another_kind(simulated: InProcessGateway) -> None:
    """The request path alike: a capture of the simulator's hold, worked by a process whose
    default is Stripe, is sent nothing and refused with the hold kept."""
    gw = simulated
    shop = await gw.new_merchant()
    pid, status = await _pay(gw, shop, "4242424242424242", captureMethod="manual")
    assert status == "requires_capture"
    processing = gw.gateway.processing
    simulator = processing.connector
    stripe = _stripe()
    processing.connector = stripe
    try:
        captured = await processing.capture(CapturePayment(shop.creds.merchant_id, pid, None), None)
    finally:
        processing.connector = simulator
        await stripe.aclose()
    assert isinstance(captured, Processed) and captured.intent["status"] == "requires_capture"
    assert [a[:2] for a in await _attempts(gw, pid)] == [("authorization", "succeeded"), ("capture", "failed")]
