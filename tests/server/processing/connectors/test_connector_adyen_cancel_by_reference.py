"""Adyen attempts the reconciler releases by canceling them by their reference
(processing/reconciler.py; docs/processors.md, "Adyen"), in a gateway in this process
(SQLite and PostgreSQL), Adyen a fake over loopback whose notifications are signed with the
official ``Adyen`` library:

- a ``PartiallyAuthorised`` answer (a partial authorization the gateway never asks for) is
  not taken for the amount, nor failed while part of the money is held: unknown, with the
  reason for the operator; its AUTHORISATION for the part settles nothing; past the safety
  window the reconciler cancels it by reference, once, and the TECHNICAL_CANCEL fails the
  attempt (nothing charged: the customer may pay again);
- a cancel by reference whose answer never came (a timeout) is sent again, under the same
  Idempotency-Key, at the next check: Adyen does it once whichever send reaches it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from paygate_server.storage.schema import reconcile_queue, transactions
from tests.support.adyen_shop import Shop, adyen_shop
from tests.support.app import running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.fake_adyen import LOST, PARTIAL

_HOUR_US = 3600 * 1_000_000


@pytest.fixture
async def shop(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """On a database of its own: a reconciler pass sees only this test's checks. A request
    Adyen never answers times out after 1 s."""
    settings = make_settings(fresh_database_url, tmp_path, processor_timeout_s=1.0)
    async with running_gateway(settings) as gw, adyen_shop(gw) as s:
        yield s


async def _past_the_window_and_checked(shop: Shop, pid: str) -> None:
    """The attempt older than the safety window, its check due, and a reconciler pass."""
    async with shop.gw.gateway.db.write() as conn:
        await conn.execute(update(transactions).where(transactions.c.intent_id == pid)
                           .values(created_at=transactions.c.created_at - _HOUR_US))
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    await shop.gw.gateway.reconciler.run_once()


async def _last_result(shop: Shop, pid: str) -> str:
    async with shop.gw.gateway.db.read() as conn:
        return str((await conn.execute(select(reconcile_queue.c.last_result)
                                       .where(reconcile_queue.c.intent_id == pid))).scalar_one())


def _cancels(shop: Shop) -> list[str]:
    return [key for key in shop.fake.answers if key.endswith("-cancel")]


async def test_a_partial_authorisation_is_never_the_amount_and_is_canceled_once(shop: Shop) -> None:
    paid = await shop.pay(5000, "EUR", PARTIAL, captureMethod="manual")
    pid = paid["paymentIntentId"]
    assert paid["status"] == "in_progress" and paid["amountCapturable"] == 0, paid
    attempt = await shop.attempt(pid, "authorization")
    assert attempt.status == "unknown"
    assert "authorised only part of the amount (PartiallyAuthorised)" in attempt.error_message
    [authorisation] = shop.fake.queued
    assert authorisation["amount"]["value"] == 2500
    await shop.deliver()  # its AUTHORISATION, for the part: not this payment's outcome
    assert (await shop.attempt(pid, "authorization")).status == "unknown"
    assert (await shop.intent(pid))["status"] == "in_progress"

    await _past_the_window_and_checked(shop, pid)
    assert len(_cancels(shop)) == 1
    [cancel] = shop.fake.queued
    assert (cancel["eventCode"], cancel["success"]) == ("TECHNICAL_CANCEL", "true")
    await _past_the_window_and_checked(shop, pid)  # checked again before the notification: not sent again
    assert shop.fake.targets.count("/v71/cancels") == 1 and len(shop.fake.queued) == 1
    await shop.deliver()
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"], intent["amountCapturable"]) == ("failed", 0, 0), intent
    assert [p.state for p in shop.fake.payments.values()] == ["cancelled"]


async def test_a_cancel_by_reference_that_timed_out_is_sent_again_with_its_key(shop: Shop) -> None:
    paid = await shop.pay(7000, "EUR", LOST, captureMethod="manual")  # authorised, its answer lost
    pid = paid["paymentIntentId"]
    assert paid["status"] == "in_progress"
    shop.fake.queued.clear()  # its AUTHORISATION is late: only the cancel's may settle it
    shop.fake.unreached.add("/v71/cancels")  # the first cancel never reaches Adyen: a timeout
    await _past_the_window_and_checked(shop, pid)
    assert _cancels(shop) == [] and shop.fake.queued == []  # Adyen has no cancel
    assert "sent again at the next check" in await _last_result(shop, pid)
    await _past_the_window_and_checked(shop, pid)  # the next check sends it again, same key
    [key] = _cancels(shop)
    attempt = await shop.attempt(pid, "authorization")
    assert key == f"{attempt.reference}-cancel"
    [cancel] = shop.fake.queued
    assert (cancel["eventCode"], cancel["success"], cancel["merchantReference"]) == (
        "TECHNICAL_CANCEL", "true", attempt.reference)
    assert shop.fake.targets.count("/v71/cancels") == 2
    await _past_the_window_and_checked(shop, pid)  # received: never sent a third time
    assert shop.fake.targets.count("/v71/cancels") == 2 and len(shop.fake.queued) == 1
    await shop.deliver()
    assert (await shop.intent(pid))["status"] == "failed"  # released at Adyen: nothing charged
    assert [p.state for p in shop.fake.payments.values()] == ["cancelled"]
