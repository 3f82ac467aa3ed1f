"""The Stripe connector in the gateway: a merchant's Stripe processor account pointed at
localstripe (a real process on loopback), payments through ``/api/v1/payment/process``,
captures, voids and refunds, and an answer lost after the confirm settled by the
reconciler with the recorded id — or by localstripe's own signed webhook, delivered to
``/processors/v1/{account}/webhooks``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import update

from paygate_server.processing.connectors import CardDetails, ChargeOutcome, ChargeRequest
from paygate_server.storage.port import NewAttempt, Outcome
from paygate_server.storage.schema import reconcile_queue
from tests.server.checkout.helpers import vault_row
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually
from tests.support.http_stub import Reply, Seen, StubServer
from tests.support.localstripe import SECRET_KEY, localstripe_or_skip
from tests.support.signing import SignedClient
from tests.support.stripe_gateway import attempt_of, pay_by_card, pay_with_confirm_lost, stripe_shop
from tests.support.tcp_proxy import DroppingProxy


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from localstripe_or_skip(tmp_path_factory)


WEBHOOK_SECRET = "whsec_gateway"


async def _shop_at(gw: InProcessGateway, api_base: str) -> SignedClient:
    return (await _shop_and_account(gw, api_base))[0]


async def _shop_and_account(gw: InProcessGateway, api_base: str) -> tuple[SignedClient, str]:
    return await stripe_shop(gw, api_base, WEBHOOK_SECRET)


async def _pay(gw: InProcessGateway, shop: SignedClient, number: str, amount: int = 2500,
               **intent: Any) -> tuple[str, dict[str, Any]]:
    return await pay_by_card(gw, shop, number, amount, "EUR", **intent)


def _intent_at_stripe(url: str, pi_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/payment_intents/{pi_id}", headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


async def test_a_payment_through_a_stripe_account(gw: InProcessGateway, localstripe_url: str) -> None:
    shop = await _shop_at(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, "4242424242424242")
    assert paid["status"] == "succeeded"
    row = await attempt_of(gw, pid)
    assert row.connector.startswith("pa_") and row.processor_id.startswith("pi_")
    assert row.auth_code.startswith("ch_")
    intent = _intent_at_stripe(localstripe_url, row.processor_id)
    assert (intent["status"], intent["amount"], intent["currency"]) == ("succeeded", 2500, "eur")
    assert intent["metadata"]["paygate_reference"] == row.reference
    assert intent["metadata"]["paygate_intent"] == pid


async def test_a_decline_through_a_stripe_account(gw: InProcessGateway, localstripe_url: str) -> None:
    shop = await _shop_at(gw, localstripe_url)
    pid, paid = await _pay(gw, shop, "4000000000000341")
    assert paid["status"] == "failed"
    status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert status["lastError"]["declineCode"] == "generic_decline"


async def test_authorize_capture_part_and_refund(gw: InProcessGateway, localstripe_url: str) -> None:
    shop = await _shop_at(gw, localstripe_url)
    pid, held = await _pay(gw, shop, "4242424242424242", amount=5000, captureMethod="manual")
    assert held["status"] == "requires_capture"
    authorization = await attempt_of(gw, pid, "authorization")
    assert _intent_at_stripe(localstripe_url, authorization.processor_id)["status"] == "requires_capture"
    captured = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 3000})
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded", captured.text
    capture = await attempt_of(gw, pid, "capture")
    intent = _intent_at_stripe(localstripe_url, authorization.processor_id)
    assert intent["status"] == "succeeded" and intent["metadata"]["paygate_capture"] == capture.reference
    refunded = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1000})
    assert refunded.status_code == 200 and refunded.json()["status"] == "succeeded", refunded.text
    refunds = httpx.get(f"{localstripe_url}/v1/refunds", params={"payment_intent": authorization.processor_id},
                        headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()["data"]
    assert [r["amount"] for r in refunds if r["metadata"].get("paygate_reference")] == [1000]


async def test_authorize_then_cancel_voids_at_stripe(gw: InProcessGateway, localstripe_url: str) -> None:
    shop = await _shop_at(gw, localstripe_url)
    pid, held = await _pay(gw, shop, "4242424242424242", captureMethod="manual")
    assert held["status"] == "requires_capture"
    canceled = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled", canceled.text
    authorization = await attempt_of(gw, pid, "authorization")
    assert _intent_at_stripe(localstripe_url, authorization.processor_id)["status"] == "canceled"


async def _hold_captured_at_stripe(gw: InProcessGateway, localstripe_url: str) -> tuple[SignedClient, str, str]:
    """A hold of 5000 made through the gateway, then captured outside it (Stripe's dashboard;
    here localstripe's own API): the shop, the intent's id, the payment intent's id."""
    shop = await _shop_at(gw, localstripe_url)
    pid, held = await _pay(gw, shop, "4242424242424242", amount=5000, captureMethod="manual")
    assert held["status"] == "requires_capture"
    pi_id = (await attempt_of(gw, pid, "authorization")).processor_id
    outside = httpx.post(f"{localstripe_url}/v1/payment_intents/{pi_id}/capture",
                         headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert outside.status_code == 200 and outside.json()["status"] == "succeeded", outside.text
    return shop, pid, pi_id


async def test_a_void_of_a_hold_captured_at_stripe_is_never_refused_with_the_hold_kept(
        gw: InProcessGateway, localstripe_url: str) -> None:
    """The hold captured outside the gateway (Stripe's dashboard; here localstripe's own API),
    then a void through the gateway: Stripe refuses the cancel, the payment intent says
    succeeded. The intent must not go back to requires_capture (inviting another void, or a
    capture of money taken already): the void stays unknown, the reconciler's look-up says
    the same, and the operator sees it (docs/processors.md, "Stripe")."""
    shop, pid, pi_id = await _hold_captured_at_stripe(gw, localstripe_url)
    canceled = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert canceled.status_code < 500, canceled.text
    status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert status["status"] == "in_progress", status
    void = await attempt_of(gw, pid, "void")
    assert void.status == "unknown" and "captured at Stripe" in void.error_message
    again = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert again.status_code == 409, again.text  # no second void of a hold that is gone
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    await gw.gateway.reconciler.run_once()
    assert (await attempt_of(gw, pid, "void")).status == "unknown"
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"
    assert _intent_at_stripe(localstripe_url, pi_id)["status"] == "succeeded"


async def test_a_capture_of_a_hold_captured_at_stripe_is_settled_by_what_stripe_received(
        gw: InProcessGateway, localstripe_url: str) -> None:
    """The hold captured outside the gateway, then a capture through it: Stripe refuses it,
    the payment intent says succeeded. The intent must not go back to requires_capture (a
    hold that is gone, offered for capture again): the capture is unknown, and the
    reconciler's look-up settles it by what Stripe received (docs/processors.md, "Stripe")."""
    shop, pid, pi_id = await _hold_captured_at_stripe(gw, localstripe_url)
    captured = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "in_progress"
    capture = await attempt_of(gw, pid, "capture")
    assert capture.status == "unknown" and "captured at Stripe already" in capture.error_message
    assert (await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid})).status_code == 409
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    await gw.gateway.reconciler.run_once()
    assert (await attempt_of(gw, pid, "capture")).status == "succeeded"
    settled = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (settled["status"], settled["amountReceived"]) == ("succeeded", 5000), settled


async def test_a_lost_answer_is_settled_by_the_reconciler(gw: InProcessGateway, localstripe_url: str) -> None:
    host, port = localstripe_url.removeprefix("http://").split(":")
    losing = [True]
    proxy = DroppingProxy(host, int(port), lambda data: losing[0] and b"/confirm HTTP/1.1" in data)
    try:
        shop = await _shop_at(gw, await proxy.start())
        pid, paid = await _pay(gw, shop, "4242424242424242", amount=3100)
        assert paid["status"] == "in_progress"  # unknown: the reconciler's
        row = await attempt_of(gw, pid)
        assert row.status == "unknown" and row.processor_id.startswith("pi_")  # recorded before the confirm
        # The reconciler asks the attempt's account (through the proxy, which loses nothing now).
        losing[0] = False
        async with gw.gateway.db.write() as conn:
            await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
        await gw.gateway.reconciler.run_once()
    finally:
        await proxy.close()
    final = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert final["status"] == "succeeded"
    assert (await attempt_of(gw, pid)).auth_code.startswith("ch_")
    charges = httpx.get(f"{localstripe_url}/v1/charges", params={"limit": 1000},
                        headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()["data"]
    mine = [c for c in charges if c["payment_intent"] == row.processor_id and c["status"] == "succeeded"]
    assert len(mine) == 1 and mine[0]["amount"] == 3100


async def test_a_lost_answer_is_settled_by_stripes_webhook(gw: InProcessGateway, localstripe_url: str) -> None:
    lost = await pay_with_confirm_lost(gw, localstripe_url, "gateway-test", WEBHOOK_SECRET, "4242424242424242",
                                       4700, "EUR")
    shop, account, pid, event = lost.shop, lost.account, lost.pid, lost.event
    # What localstripe sent, as it sent it, to the account's endpoint.
    headers = {"stripe-signature": event.headers["stripe-signature"], "content-type": "application/json"}
    answer = await gw.http.post(f"/processors/v1/{account}/webhooks", content=event.body, headers=headers)
    assert (answer.status_code, answer.content) == (200, b'{"received":true}')
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "succeeded"
    assert (await attempt_of(gw, pid)).auth_code.startswith("ch_")
    # Tampered: refused, nothing applied (and the payment stays as the first delivery left it).
    tampered = event.body.replace(b"4700", b"4701")
    refused = await gw.http.post(f"/processors/v1/{account}/webhooks", content=tampered, headers=headers)
    assert refused.status_code == 400


async def test_an_unverifiable_notification_applies_nothing_and_the_verified_one_takes_the_cvc(
        gw: InProcessGateway, localstripe_url: str) -> None:
    """SPEC §7: unverifiable → ``400``, nothing applied; SPEC §5: the CVC is kept only until
    the authorization's outcome is known — here learnt from Stripe's notification, for a
    checkout payment (a token: the card vaulted, its CVC with it)."""
    lost = await pay_with_confirm_lost(gw, localstripe_url, "gateway-cvc", WEBHOOK_SECRET, "4242424242424242",
                                       4800, "EUR", by_token=True)
    shop, account, pid, event = lost.shop, lost.account, lost.pid, lost.event
    status = f"/api/v1/payment/status?paymentIntentId={pid}"
    hook = f"/processors/v1/{account}/webhooks"
    assert (await vault_row(gw, intent_id=pid)).cvc_sealed is not None  # the outcome is not known yet
    headers = {"stripe-signature": event.headers["stripe-signature"], "content-type": "application/json"}
    signed_otherwise = {**headers, "stripe-signature": event.headers["stripe-signature"].replace("v1=", "v1=0")}
    for body, sent in ((event.body.replace(b"4800", b"4801"), headers), (event.body, signed_otherwise),
                       (event.body, {"content-type": "application/json"})):
        refused = await gw.http.post(hook, content=body, headers=sent)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "parameter_invalid"
    assert (await shop.get(status)).json()["status"] == "in_progress"  # nothing applied
    assert (await attempt_of(gw, pid)).status == "unknown"
    assert (await vault_row(gw, intent_id=pid)).cvc_sealed is not None
    answer = await gw.http.post(hook, content=event.body, headers=headers)
    assert (answer.status_code, answer.content) == (200, b'{"received":true}')
    assert (await shop.get(status)).json()["status"] == "succeeded"
    row = await vault_row(gw, intent_id=pid)  # gone with the outcome, in its transaction
    assert row.cvc_sealed is None and row.pan_sealed is not None


async def test_a_notification_racing_the_reconcilers_lookup_settles_the_attempt_once(
        gw: InProcessGateway, localstripe_url: str) -> None:
    """SPEC §7: a notification and a sync racing each other settle the attempt once. Three
    lost answers; for each, Stripe's signed event and a reconciler pass run at the same time."""
    import asyncio

    host, port = localstripe_url.removeprefix("http://").split(":")
    proxy = DroppingProxy(host, int(port), lambda data: b"/confirm HTTP/1.1" in data)
    async with StubServer(lambda seen: Reply(200, b"")) as relay:
        assert httpx.post(f"{localstripe_url}/_config/webhooks/gateway-race", data={
            "url": relay.url + "/relay", "secret": WEBHOOK_SECRET,
            "events[]": ["payment_intent.succeeded"]}).status_code == 200
        try:
            shop, account = await _shop_and_account(gw, await proxy.start())
            paid = [await _pay(gw, shop, "4242424242424242", amount=5100 + i) for i in range(3)]
        finally:
            await proxy.close()
        for pid, answer in paid:
            assert answer["status"] == "in_progress"
            pi_id = (await attempt_of(gw, pid)).processor_id

            def delivered(pi_id: str = pi_id) -> Seen | None:
                return next((s for s in relay.seen if orjson.loads(s.body)["data"]["object"]["id"] == pi_id), None)

            event = await eventually(delivered, what=f"localstripe's event for {pi_id}")
            assert event is not None
            async with gw.gateway.db.write() as conn:
                await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
            headers = {"stripe-signature": event.headers["stripe-signature"], "content-type": "application/json"}
            hook, _ = await asyncio.gather(
                gw.http.post(f"/processors/v1/{account}/webhooks", content=event.body, headers=headers),
                gw.gateway.reconciler.run_once())
            assert hook.status_code == 200
            history = (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
            txn = (await attempt_of(gw, pid)).id
            settled = [e for e in history if e["objectId"] == txn and e["data"]["status"] == "succeeded"]
            assert len(settled) == 1, history  # one settle, whoever won
            assert [e["data"]["status"] for e in history if e["type"].startswith("payment_intent")][-1] == "succeeded"


async def test_an_attempt_settled_before_its_id_is_recorded_is_never_confirmed(
        gw: InProcessGateway, localstripe_url: str) -> None:
    """A request that outlived its in-flight grace (a stalled process) finds its attempt
    failed by a reconciler ("never received"): the payment intent it created is never
    confirmed, so the card is not charged for a payment the gateway calls failed (the
    customer may pay again)."""
    shop, account = await _shop_and_account(gw, localstripe_url)
    pid = (await shop.create_intent(amount=2600, currency="EUR"))["paymentIntentId"]
    begun = await gw.gateway.payments.begin_attempt(NewAttempt(
        shop.creds.merchant_id, pid, {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}, None, None,
        account, 0, 10), None)
    assert isinstance(begun, tuple)
    _, attempt = begun
    never_received = Outcome("failed", error_code="processing_error",
                             error_message="the processor never received this attempt")
    await gw.gateway.payments.settle_attempt(attempt, never_received)  # the reconciler, meanwhile
    created: list[str] = []

    async def record(pi_id: str) -> None:
        created.append(pi_id)
        await gw.gateway.payments.record_processor_id(attempt.transaction_id, pi_id)

    connector = await gw.gateway.processors.connector(account, gw.gateway.connector)
    result = await connector.charge(ChargeRequest(attempt.reference, pid, shop.creds.merchant_id, 2600, "EUR",
                                                  CardDetails("4242424242424242", 12, 2034, "123"),
                                                  record_processor_id=record))
    assert result.outcome is ChargeOutcome.FAILED
    assert _intent_at_stripe(localstripe_url, created[0])["status"] == "requires_confirmation"  # never confirmed
    assert (await attempt_of(gw, pid)).status == "failed"
