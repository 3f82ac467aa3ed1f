"""Adyen's late failures, in the gateway (SQLite and PostgreSQL): a ``REFUND_FAILED`` after
the ``REFUND`` (a ``CAPTURE_FAILED`` after the ``CAPTURE``), signed with the official
``Adyen`` library and delivered to ``/processors/v1/{account}/webhooks``, changes no status
(outcomes settle once; SPEC §6 has no "reversed" state) but is recorded once for the
operator, logged at WARNING and listed by ``paygate reconcile`` (docs/processors.md,
"Adyen"). A failure for an operation not settled yet settles it as usual and is not late."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from paygate_server.storage.port import LateOutcome
from paygate_server.storage.schema import refunds
from tests.server.test_cli import paygate as run_cli
from tests.support.adyen_shop import Shop, adyen_shop, resigned
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.processes import gateway_env

SCHEME_SAYS = "Refused by the card scheme 4111 1111 1111 1111 after acceptance"


@pytest.fixture
async def gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """A database of its own: what ``paygate reconcile`` lists is this module's only."""
    async with running_gateway(make_settings(fresh_database_url, tmp_path)) as g:
        yield g


@pytest.fixture
async def shop(gw: InProcessGateway) -> AsyncIterator[Shop]:
    async with adyen_shop(gw) as s:
        yield s


def _late(item: dict[str, Any], event: str, reason: str = "Refused by the card scheme") -> dict[str, Any]:
    """Adyen's later word on an operation it notified before: same references, another code."""
    return resigned({**item, "eventCode": event, "reason": reason})


async def _refund_status(shop: Shop, pid: str) -> str:
    async with shop.gw.gateway.db.read() as conn:
        return str((await conn.execute(select(refunds.c.status).where(refunds.c.intent_id == pid))).scalar_one())


async def _late_rows(shop: Shop) -> list[LateOutcome]:
    return await shop.gw.gateway.payments.late_outcomes(limit=100)


async def _refunded(shop: Shop, amount: int = 1500) -> tuple[str, dict[str, Any]]:
    """A payment refunded in part, the REFUND delivered; the intent and the REFUND item."""
    paid = await shop.pay(5000, "EUR")
    pid = paid["paymentIntentId"]
    shop.fake.queued.clear()
    answer = await shop.client.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": amount})
    assert answer.status_code == 200, answer.text
    [refund_item] = shop.fake.queued
    await shop.deliver()
    assert await _refund_status(shop, pid) == "succeeded"
    return pid, refund_item


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "contradicts a settled" in r.getMessage()]


async def test_a_refund_failed_after_its_refund_is_recorded_and_listed(
        shop: Shop, caplog: pytest.LogCaptureFixture, fresh_database_url: str, tmp_path: Path) -> None:
    pid, refund_item = await _refunded(shop)
    before = await shop.intent(pid)
    caplog.set_level(logging.INFO, logger="paygate.processors")
    shop.fake.queued = [_late(refund_item, "REFUND_FAILED", SCHEME_SAYS)]
    await shop.deliver()
    # Nothing changes: the refund stays succeeded, the intent as it was.
    assert await _refund_status(shop, pid) == "succeeded"
    assert await shop.intent(pid) == before
    [late] = await _late_rows(shop)
    account = shop.hook.split("/")[3]
    assert (late.kind, late.intent_id, late.merchant_id, late.connector, late.gateway_status,
            late.processor_status, late.handled_at) == (
        "refund", pid, shop.client.creds.merchant_id, account, "succeeded", "failed", None)
    assert late.object_id.startswith("re_")
    # The processor's words, without the card number they quoted.
    assert late.processor_text is not None and late.processor_text.startswith("Adyen REFUND_FAILED")
    assert "4111" not in late.processor_text
    [warning] = _warnings(caplog)
    assert late.object_id in warning and pid in warning

    env = gateway_env(fresh_database_url, tmp_path / "cli")
    listed = run_cli("reconcile", "--once", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)["lateOutcomes"]
    assert (item["objectId"], item["paymentIntentId"], item["gatewayStatus"], item["processorStatus"]) == (
        late.object_id, pid, "succeeded", "failed")
    text = run_cli("reconcile", "--once", env=env)
    assert text.returncode == 0 and "1 settled outcome(s) the processor contradicted later" in text.stdout
    assert late.object_id in text.stdout and "4111" not in text.stdout


async def test_a_capture_failed_after_its_capture_is_recorded(shop: Shop) -> None:
    held = await shop.pay(5000, "EUR", captureMethod="manual")
    pid = held["paymentIntentId"]
    shop.fake.queued.clear()
    captured = await shop.client.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 4000})
    assert captured.status_code == 200, captured.text
    [capture_item] = shop.fake.queued
    await shop.deliver()
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"]) == ("succeeded", 4000)
    shop.fake.queued = [_late(capture_item, "CAPTURE_FAILED")]
    await shop.deliver()
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"]) == ("succeeded", 4000)
    capture = await shop.attempt(pid, "capture")
    assert capture.status == "succeeded"
    [late] = await _late_rows(shop)
    assert (late.kind, late.object_id, late.intent_id, late.gateway_status, late.processor_status) == (
        "capture", capture.id, pid, "succeeded", "failed")
    assert late.processor_text == "Adyen CAPTURE_FAILED: Refused by the card scheme"


async def test_the_same_late_failure_delivered_again_is_recorded_once(
        shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    pid, refund_item = await _refunded(shop)
    caplog.set_level(logging.INFO, logger="paygate.processors")
    late_item = _late(refund_item, "REFUND_FAILED")
    shop.fake.queued = [late_item]
    await shop.deliver()
    shop.fake.queued = [late_item, late_item]  # Adyen sends it again, twice in one batch too
    await shop.deliver()
    assert len(await _late_rows(shop)) == 1
    assert len(_warnings(caplog)) == 1
    # The REFUND itself again agrees with what is settled: nothing recorded for it.
    shop.fake.queued = [refund_item]
    await shop.deliver()
    assert [r.processor_status for r in await _late_rows(shop)] == ["failed"]
    assert await _refund_status(shop, pid) == "succeeded"


async def test_a_failure_of_a_refund_not_settled_yet_settles_it_and_is_not_late(shop: Shop) -> None:
    paid = await shop.pay(5000, "EUR")
    pid = paid["paymentIntentId"]
    shop.fake.queued.clear()
    answer = await shop.client.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1500})
    assert answer.status_code == 200 and answer.json()["status"] in ("pending", "unknown"), answer.text
    [refund_item] = shop.fake.queued
    shop.fake.queued = [_late(refund_item, "REFUND_FAILED")]  # before any REFUND
    await shop.deliver()
    assert await _refund_status(shop, pid) == "failed"
    assert (await shop.intent(pid))["amountRefunded"] == 0  # its reservation released
    assert await _late_rows(shop) == []
    # The REFUND arriving after it is the reverse case: a success for a settled failure.
    shop.fake.queued = [refund_item]
    await shop.deliver()
    assert await _refund_status(shop, pid) == "failed"
    [late] = await _late_rows(shop)
    assert (late.gateway_status, late.processor_status) == ("failed", "succeeded")
