"""A capture or refund Adyen received, sent again by the reconciler when Adyen cannot be
reached: the resend's "nothing sent" says nothing of the first request, which Adyen has.

Adyen answers a capture or refund ``received`` and states its outcome by notification; its
look-ups cannot tell, so the reconciler sends the operation again under its key (Adyen
answers a request it has with its first answer). When that resend cannot even connect, the
connector's answer is "nothing sent" (``FAILED``): true of the resend, not of the first
request. Settled on it, a refund Adyen is making would be ``failed`` and its amount
released (the merchant may refund it again: twice the money back), a capture Adyen is
making would put the intent back to ``requires_capture``. The operation stays ``unknown``
instead, and Adyen's notification settles it. Real HTTP: the fake Adyen over loopback
(tests/support/fake_adyen.py), its notifications signed with the official library; the
reconciler with connectors of its own, as ``paygate reconcile`` has (no kept-alive
connection from the request path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from paygate_server.processing.reconciler import Reconciler
from paygate_server.processors.registry import ProcessorRoutes
from paygate_server.storage.schema import reconcile_queue, refunds, transactions
from tests.support.adyen_shop import Shop, adyen_shop
from tests.support.app import running_gateway
from tests.support.app import test_settings as make_settings

_HOUR_US = 3600 * 1_000_000


@pytest.fixture
async def shop(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """A merchant with an Adyen account at a fake Adyen, on a database of its own (a
    reconciler pass sees only this test's checks)."""
    async with running_gateway(make_settings(fresh_database_url, tmp_path)) as gw, adyen_shop(gw) as s:
        yield s


async def _reconcile_with_adyen_down(shop: Shop, pid: str) -> None:
    """The operation's request long over (past the in-flight grace: sent again at its check),
    Adyen refusing connections, and a reconciler pass."""
    gw = shop.gw
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(transactions).where(transactions.c.intent_id == pid)
                           .values(created_at=transactions.c.created_at - _HOUR_US))
        await conn.execute(update(refunds).where(refunds.c.intent_id == pid)
                           .values(created_at=refunds.c.created_at - _HOUR_US))
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    assert shop.adyen is not None
    shop.adyen.stop_listening()
    settings = gw.gateway.settings
    processors = ProcessorRoutes(gw.gateway.db, gw.gateway.master_key, cache_ttl_s=0.0,
                                 connect_timeout=settings.processor_connect_timeout_s,
                                 read_timeout=settings.processor_timeout_s)
    try:
        report = await Reconciler(gw.gateway.payments, gw.gateway.connector, settings,
                                  processors=processors).run_once()
    finally:
        await processors.aclose()
    assert report.checked == 1, report


async def test_a_refund_adyen_received_stays_unknown_when_its_resend_cannot_connect(shop: Shop) -> None:
    pid = (await shop.pay(5000, "EUR"))["paymentIntentId"]
    shop.fake.queued.clear()
    answer = await shop.client.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1500})
    assert answer.status_code == 200, answer.text
    [refund_item] = shop.fake.queued  # Adyen has it, and will refund it

    await _reconcile_with_adyen_down(shop, pid)
    async with shop.gw.gateway.db.read() as conn:
        status = (await conn.execute(select(refunds.c.status).where(refunds.c.intent_id == pid))).scalar_one()
    assert status == "unknown"  # not "failed": Adyen has the refund
    assert (await shop.intent(pid))["amountRefunded"] == 1500  # still reserved: no second refund of it

    await shop.deliver()  # Adyen's REFUND
    async with shop.gw.gateway.db.read() as conn:
        status = (await conn.execute(select(refunds.c.status).where(refunds.c.intent_id == pid))).scalar_one()
    assert status == "succeeded"
    assert await shop.gw.gateway.payments.late_outcomes(limit=10) == []  # nothing contradicted


async def test_a_capture_adyen_received_stays_unknown_when_its_resend_cannot_connect(shop: Shop) -> None:
    pid = (await shop.pay(5000, "EUR", captureMethod="manual"))["paymentIntentId"]
    shop.fake.queued.clear()
    captured = await shop.client.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 4000})
    assert captured.status_code == 200 and captured.json()["status"] == "in_progress", captured.text

    await _reconcile_with_adyen_down(shop, pid)
    assert (await shop.attempt(pid, "capture")).status == "unknown"  # not "failed": Adyen has the capture
    assert (await shop.intent(pid))["status"] == "in_progress"  # not back to requires_capture

    await shop.deliver()  # Adyen's CAPTURE
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"]) == ("succeeded", 4000)
    assert await shop.gw.gateway.payments.late_outcomes(limit=10) == []
