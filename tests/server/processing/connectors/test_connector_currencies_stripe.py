"""Money across currencies through a Stripe account: payments through
``/api/v1/payment/process`` to localstripe (a real process on loopback), and what localstripe
recorded. Stripe counts some currencies in other units than ISO 4217 (docs.stripe.com/
currencies): ISK and UGX ×100, MGA ÷100; its three-decimal amounts end in 0. An amount
Stripe cannot take is refused before anything is sent, never rounded; an answer or event
that says another amount moved settles nothing (docs/processors.md, "Amounts and
currencies")."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from paygate_server.processing.reconciler import list_unresolved
from paygate_server.storage.schema import reconcile_queue, refunds
from tests.support.app import InProcessGateway
from tests.support.localstripe import SECRET_KEY, localstripe_or_skip
from tests.support.signing import SignedClient
from tests.support.stripe_gateway import attempt_of, pay_by_card, pay_with_confirm_lost, stripe_shop
from tests.support.tcp_proxy import DroppingProxy

WEBHOOK_SECRET = "whsec_currencies"
APPROVE = "4242424242424242"


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from localstripe_or_skip(tmp_path_factory)


async def _shop(gw: InProcessGateway, api_base: str) -> tuple[SignedClient, str]:
    return await stripe_shop(gw, api_base, WEBHOOK_SECRET)


async def _pay(gw: InProcessGateway, shop: SignedClient, amount: int, currency: str,
               **intent: Any) -> tuple[str, dict[str, Any]]:
    return await pay_by_card(gw, shop, APPROVE, amount, currency, **intent)


def _at_stripe(url: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{url}{path}", params=params, headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


# (currency, the gateway's amount, what Stripe must be sent)
SENT_AS = [
    ("USD", 1999, 1999),
    ("JPY", 500, 500),  # zero-decimal in both
    ("KRW", 15000, 15000),
    ("VND", 250000, 250000),
    ("CLP", 990, 990),
    ("ISK", 500, 50000),  # zero-decimal, sent with two decimals: 500 kr is 50000
    ("UGX", 3000, 300000),  # likewise
    ("MGA", 1000, 10),  # two decimals in ISO, none at Stripe: 10.00 Ar is 10
    ("KWD", 1250, 1250),  # three decimals, ending in 0
    ("BHD", 100, 100),
    ("HUF", 1050, 1050),  # two decimals for charges (payouts are whole forints)
    ("TWD", 1050, 1050),
]


@pytest.mark.parametrize(("currency", "amount", "at_stripe"), SENT_AS, ids=[c for c, _, _ in SENT_AS])
async def test_what_stripe_is_sent_for_each_currency(gw: InProcessGateway, localstripe_url: str, currency: str,
                                                     amount: int, at_stripe: int) -> None:
    shop, _ = await _shop(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, amount, currency)
    assert (paid["status"], paid["amountReceived"], paid["currency"]) == ("succeeded", amount, currency)
    row = await attempt_of(gw, pid)
    intent = _at_stripe(localstripe_url, f"/v1/payment_intents/{row.processor_id}")
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", at_stripe, currency.lower())


async def test_an_isk_refund_is_sent_in_stripes_units(gw: InProcessGateway, localstripe_url: str) -> None:
    shop, _ = await _shop(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, 700, "ISK")
    assert paid["status"] == "succeeded"
    refunded = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 150})
    assert refunded.status_code == 200 and refunded.json()["status"] == "succeeded", refunded.text
    pi_id = (await attempt_of(gw, pid)).processor_id
    mine = [r for r in _at_stripe(localstripe_url, "/v1/refunds", payment_intent=pi_id)["data"]
            if r["metadata"].get("paygate_reference")]
    assert [(r["amount"], r["currency"]) for r in mine] == [(15000, "isk")]


# (currency, amount): amounts Stripe cannot take as they are
UNREPRESENTABLE = [
    ("KWD", 1235),  # three decimals must end in 0: Stripe would have it rounded
    ("OMR", 1),
    ("MGA", 1050),  # 10.50 Ar: Stripe takes whole ariary only
    ("ISK", 1_000_000),  # 100,000,000 in Stripe's units: past its eight digits
]


@pytest.mark.parametrize(("currency", "amount"), UNREPRESENTABLE, ids=[f"{c}-{a}" for c, a in UNREPRESENTABLE])
async def test_an_amount_stripe_cannot_take_is_not_sent(gw: InProcessGateway, localstripe_url: str, currency: str,
                                                        amount: int) -> None:
    shop, _ = await _shop(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, amount, currency)
    assert paid["status"] == "failed"
    assert paid["lastError"]["code"] == "processing_error"
    row = await attempt_of(gw, pid)
    assert row.processor_id is None  # no payment intent was created
    assert row.error_message.endswith(f"{currency} cannot be sent: nothing sent")  # the operator sees why
    everything = _at_stripe(localstripe_url, "/v1/payment_intents", limit="100")["data"]
    assert [i for i in everything if i["metadata"].get("paygate_intent") == pid] == []


async def test_a_partial_capture_stripe_cannot_take_is_refused_and_the_hold_kept(
        gw: InProcessGateway, localstripe_url: str) -> None:
    shop, _ = await _shop(gw, localstripe_url)
    pid, held = await _pay(gw, shop, 5000, "KWD", captureMethod="manual")
    assert held["status"] == "requires_capture"
    refused = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 1235})
    assert refused.status_code == 200, refused.text
    assert (refused.json()["status"], refused.json()["amountReceived"]) == ("requires_capture", 0)
    pi_id = (await attempt_of(gw, pid, "authorization")).processor_id
    assert _at_stripe(localstripe_url, f"/v1/payment_intents/{pi_id}")["status"] == "requires_capture"
    captured = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 1230})
    assert (captured.json()["status"], captured.json()["amountReceived"]) == ("succeeded", 1230)


async def test_a_refund_stripe_cannot_take_is_refused_and_released(gw: InProcessGateway,
                                                                   localstripe_url: str) -> None:
    shop, _ = await _shop(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, 5000, "KWD")
    assert paid["status"] == "succeeded"
    refused = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1235})
    assert refused.status_code == 200 and refused.json()["status"] == "failed", refused.text
    # Why, for the merchant and the operator: the refund's history says what its answer said.
    why = "Stripe takes KWD amounts in steps of 0.010 only: 1.235 KWD cannot be sent: nothing sent"
    assert refused.json()["failureReason"] == why
    events = (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
    assert [e["data"]["failureReason"] for e in events if e["type"].startswith("refund.")] == [None, why]
    pi_id = (await attempt_of(gw, pid)).processor_id
    assert [r for r in _at_stripe(localstripe_url, "/v1/refunds", payment_intent=pi_id)["data"]
            if r["metadata"].get("paygate_reference")] == []
    async with gw.gateway.db.read() as conn:
        [refund] = (await conn.execute(select(refunds).where(refunds.c.intent_id == pid))).all()
    assert (refund.status, refund.failure_reason) == ("failed", why)
    status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert status["amountRefunded"] == 0  # released: the merchant may refund 1.230 or 1.240


def _signed(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    signature = hmac.new(WEBHOOK_SECRET.encode(), b"%d." % stamp + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={stamp},v1={signature}", "content-type": "application/json"}


async def test_an_event_for_another_amount_settles_nothing(gw: InProcessGateway, localstripe_url: str) -> None:
    """A lost confirm of an ISK payment; localstripe's own payment_intent.succeeded says
    50000 (500 kr). Changed to 49900 and signed again, the event is acknowledged and settles
    nothing; the real one settles the payment."""
    lost = await pay_with_confirm_lost(gw, localstripe_url, "currencies-test", WEBHOOK_SECRET, APPROVE, 500, "ISK")
    shop, account, pid, event = lost.shop, lost.account, lost.pid, lost.event
    real = orjson.loads(event.body)
    assert (real["data"]["object"]["amount"], real["data"]["object"]["currency"]) == (50000, "isk")
    for field, value in (("amount", 49900), ("currency", "eur"), ("amount", 500)):
        other = orjson.loads(event.body)
        other["data"]["object"][field] = value
        body = orjson.dumps(other)
        answer = await gw.http.post(f"/processors/v1/{account}/webhooks", content=body, headers=_signed(body))
        assert (answer.status_code, answer.content) == (200, b'{"received":true}')
        assert (await attempt_of(gw, pid)).status == "unknown", (field, value)
        assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"
    answer = await gw.http.post(f"/processors/v1/{account}/webhooks", content=event.body, headers=_signed(event.body))
    assert answer.status_code == 200
    final = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (final["status"], final["amountReceived"]) == ("succeeded", 500)


async def test_the_reconciler_settles_a_lost_isk_payment_by_stripes_amount(gw: InProcessGateway,
                                                                           localstripe_url: str) -> None:
    """The look-up reads 50000 ISK at Stripe: 500 kr, the attempt's amount, so it settles."""
    host, port = localstripe_url.removeprefix("http://").split(":")
    losing = [True]
    proxy = DroppingProxy(host, int(port), lambda data: losing[0] and b"/confirm HTTP/1.1" in data)
    try:
        shop, _ = await _shop(gw, await proxy.start())
        pid, paid = await _pay(gw, shop, 500, "ISK")
        assert paid["status"] == "in_progress"
        losing[0] = False
        async with gw.gateway.db.write() as conn:
            await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
        await gw.gateway.reconciler.run_once()
    finally:
        await proxy.close()
    final = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (final["status"], final["amountReceived"]) == ("succeeded", 500)


async def test_a_lookup_that_finds_other_money_settles_nothing(gw: InProcessGateway, localstripe_url: str) -> None:
    """A lost confirm of 500 kr; Stripe's intent then says 49900 (499 kr), then a string:
    the reconciler's look-ups leave the attempt unknown, and listed. Once it says 50000,
    the next look-up settles it."""
    host, port = localstripe_url.removeprefix("http://").split(":")
    losing = [True]
    proxy = DroppingProxy(host, int(port), lambda data: losing[0] and b"/confirm HTTP/1.1" in data)
    try:
        shop, _ = await _shop(gw, await proxy.start())
        pid, paid = await _pay(gw, shop, 500, "ISK")
        assert paid["status"] == "in_progress"
        losing[0] = False
        pi_id = (await attempt_of(gw, pid)).processor_id
        said = {49900: "the processor says 499 ISK moved, not the 500 ISK sent", "50000": "amount is not an integer"}
        for amount in (49900, "50000", 50000):
            changed = httpx.post(f"{localstripe_url}/v1/payment_intents/{pi_id}", json={"amount": amount},
                                 headers={"Authorization": f"Bearer {SECRET_KEY}"})
            assert changed.status_code == 200 and changed.json()["amount"] == amount, changed.text
            async with gw.gateway.db.write() as conn:
                await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
            await gw.gateway.reconciler.run_once()
            if amount != 50000:
                row = await attempt_of(gw, pid)
                assert row.status == "unknown", amount
                [listed] = [u for u in await list_unresolved(gw.gateway.payments) if u["id"] == row.id]
                assert listed["lastResult"].startswith(said[amount]), listed
    finally:
        await proxy.close()
    final = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (final["status"], final["amountReceived"]) == ("succeeded", 500)
