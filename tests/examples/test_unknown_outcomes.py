"""What the shop shows when it does not know how a payment went: never a card form (the
customer would pay again) and never "declined" — "processing" until the gateway says."""
from __future__ import annotations

from tests.examples.conftest import ShopHarness
from tests.examples.test_shop_flow import page_config

PAY_PATH = "/api/v1/payment/process"
STATUS_PATH = "/api/v1/payment/status"


async def test_a_lost_pay_answer_never_offers_the_card_form_again(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_lost_0123456789"})
    # The gateway started the payment; no answer reached the shop.
    assert r.status_code == 502
    body = r.json()
    assert body["error"]["message"] == "We could not confirm your payment yet. This page will update by itself."
    # The stored order (still "awaiting payment") would make the page mount a fresh card form.
    assert "order" not in body
    # A reload asks the gateway before it offers the card form.
    config = page_config((await shop.http.get(f"/orders/{order_id}")).text)
    assert (config["order"]["status"], config["order"]["payable"], config["clientSecret"]) == (
        "processing", False, None)
    (intent_id,) = shop.gateway.intents
    shop.gateway.settle(intent_id)
    assert (await shop.http.get(f"/orders/{order_id}/status?wait=1")).json()["status"] == "paid"
    assert len([r for r in shop.gateway.requests if r[1] == PAY_PATH]) == 4  # one payment, retried by the SDK


async def test_status_unavailable_sends_no_stale_order(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_lost_0123456789"})
    shop.gateway.unreachable.add(STATUS_PATH)
    r = await shop.http.get(f"/orders/{order_id}/status?wait=1")
    assert r.status_code == 503
    assert r.json() == {"error": {"message": "Payment status temporarily unavailable."}}


async def test_a_conflict_while_the_status_is_unreachable_is_409_not_500(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_lost_0123456789"})
    shop.gateway.unreachable.add(STATUS_PATH)
    # The customer's second try: the gateway refuses it (the first is in progress).
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    assert r.status_code == 409
    assert r.json() == {"error": {"message": "This order is already being paid."}}
