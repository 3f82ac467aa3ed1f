"""Money across currencies through an Adyen account, in the gateway: payments through
``/api/v1/payment/process`` to Adyen's published API shapes served over loopback
(tests/support/fake_adyen.py), and notifications signed with the official ``Adyen``
library delivered to ``/processors/v1/{account}/webhooks``.

Adyen's own currency table (docs.adyen.com/development-resources/currency-codes) differs
from ISO 4217 for CLP and ISK (two decimals) and CVE and IDR (none). A notification that
states another amount or currency than the operation's — a CAPTURE for less, a REFUND in
another currency, an AUTHORISATION for part of the amount — is acknowledged and settles
nothing (docs/processors.md, "Amounts and currencies")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.storage.schema import refunds, transactions
from tests.support.adyen_shop import Shop, adyen_shop
from tests.support.app import InProcessGateway
from tests.support.fake_adyen import LOST


@pytest.fixture
async def shop(gw: InProcessGateway) -> AsyncIterator[Shop]:
    async with adyen_shop(gw) as s:
        yield s


# (currency, the gateway's amount, what Adyen must be sent)
SENT_AS = [("EUR", 1999, 1999), ("JPY", 500, 500), ("ISK", 500, 50000), ("CLP", 990, 99000),
           ("IDR", 1500000, 15000), ("CVE", 1000, 10), ("KWD", 1235, 1235), ("UGX", 3000, 3000)]


@pytest.mark.parametrize(("currency", "amount", "at_adyen"), SENT_AS, ids=[c for c, _, _ in SENT_AS])
async def test_what_adyen_is_sent_for_each_currency(shop: Shop, currency: str, amount: int, at_adyen: int) -> None:
    paid = await shop.pay(amount, currency)
    assert (paid["status"], paid["amountReceived"]) == ("succeeded", amount)
    [payment] = shop.fake.charges((await shop.attempt(paid["paymentIntentId"], "charge")).reference)
    assert (payment.amount, payment.currency) == (at_adyen, currency)


async def test_an_amount_adyen_cannot_take_is_not_sent(shop: Shop) -> None:
    failed = await shop.pay(1050, "IDR")  # Rp 10.50: Adyen counts whole rupiah
    assert (failed["status"], failed["lastError"]["code"]) == ("failed", "processing_error")
    assert shop.fake.payments == {}
    attempt = await shop.attempt(failed["paymentIntentId"], "charge")
    assert attempt.error_message == "Adyen takes IDR in whole units only: 10.50 IDR cannot be sent: nothing sent"


async def test_an_isk_authorisation_notification_settles_a_lost_answer(shop: Shop) -> None:
    lost = await shop.pay(500, "ISK", LOST)
    assert lost["status"] == "in_progress"
    [item] = shop.fake.queued
    assert item["amount"] == {"value": 50000, "currency": "ISK"}
    await shop.deliver()
    final = await shop.intent(lost["paymentIntentId"])
    assert (final["status"], final["amountReceived"]) == ("succeeded", 500)


async def test_a_partial_authorisation_notification_settles_nothing(shop: Shop) -> None:
    lost = await shop.pay(5000, "EUR", LOST)
    pid = lost["paymentIntentId"]
    genuine = list(shop.fake.queued)
    await shop.deliver(changed={"amount": {"value": 3000, "currency": "EUR"}})
    assert (await shop.attempt(pid, "charge")).status == "unknown"
    assert (await shop.intent(pid))["status"] == "in_progress"
    shop.fake.queued = genuine
    await shop.deliver()
    assert (await shop.intent(pid))["status"] == "succeeded"


async def test_a_capture_notification_for_less_settles_nothing(shop: Shop) -> None:
    held = await shop.pay(5000, "EUR", captureMethod="manual")
    pid = held["paymentIntentId"]
    assert held["status"] == "requires_capture"
    shop.fake.queued.clear()
    captured = await shop.client.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 4000})
    assert captured.json()["status"] == "in_progress", captured.text
    genuine = list(shop.fake.queued)
    await shop.deliver(changed={"amount": {"value": 3999, "currency": "EUR"}})
    assert (await shop.attempt(pid, "capture")).status in ("pending", "unknown")
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"]) == ("in_progress", 0)
    shop.fake.queued = genuine
    await shop.deliver()
    intent = await shop.intent(pid)
    assert (intent["status"], intent["amountReceived"]) == ("succeeded", 4000)


async def test_a_refund_notification_in_another_currency_settles_nothing(shop: Shop) -> None:
    paid = await shop.pay(5000, "EUR")
    pid = paid["paymentIntentId"]
    shop.fake.queued.clear()
    refunded = await shop.client.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1500})
    assert refunded.status_code == 200, refunded.text
    genuine = list(shop.fake.queued)
    await shop.deliver(changed={"amount": {"value": 1500, "currency": "USD"}})

    async def refund_status() -> str:
        async with shop.gw.gateway.db.read() as conn:
            return str((await conn.execute(select(refunds.c.status).where(refunds.c.intent_id == pid))).scalar_one())

    assert await refund_status() in ("pending", "unknown")
    shop.fake.queued = genuine
    await shop.deliver()
    assert await refund_status() == "succeeded"


async def test_an_amount_the_first_account_cannot_take_fails_over_to_one_that_can(
        gw: InProcessGateway, shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> None:
    """KWD 1.235: Stripe takes three-decimal amounts ending in 0 only, Adyen takes it. The
    Stripe account is sent nothing (its apiBase is a port nobody listens on: any request would
    fail differently), the attempt fails over, and Adyen charges it."""
    stripe = await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.client.creds.merchant_id,
                               kind="stripe", name="Stripe", settings={"apiBase": "http://127.0.0.1:9"},
                               credentials={"secretKey": "sk_test_never_used", "webhookSecret": "whsec_x"})
    adyen = shop.hook.split("/")[3]
    await set_routing(gw.gateway.db, merchant_id=shop.client.creds.merchant_id,
                      document=[{"use": [stripe.id, adyen]}])
    paid = await shop.pay(1235, "KWD")
    assert (paid["status"], paid["amountReceived"]) == ("succeeded", 1235)
    async with gw.gateway.db.read() as conn:
        attempts = (await conn.execute(select(transactions.c.connector, transactions.c.status,
                                              transactions.c.error_message)
                                       .where(transactions.c.intent_id == paid["paymentIntentId"])
                                       .order_by(transactions.c.created_at))).all()
    assert [(a.connector, a.status) for a in attempts] == [(stripe.id, "failed"), (adyen, "succeeded")]
    assert attempts[0].error_message.endswith("1.235 KWD cannot be sent: nothing sent")
    assert [(p.amount, p.currency) for p in shop.fake.payments.values()] == [(1235, "KWD")]
