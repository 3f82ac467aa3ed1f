"""The shop's pages and JSON calls against a fake gateway: checkout, pay, decline and
retry, status, admin refunds — and what the pages promise about card data."""
from __future__ import annotations

import json
import re
from typing import Any

from tests.examples.conftest import ShopHarness


def page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="order-config">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    return json.loads(match.group(1))


async def test_checkout_creates_an_order_and_its_intent_once(shop: ShopHarness) -> None:
    order_id = await shop.place_order("tw-house-340", "tw-house-340", "tw-filters-100")
    page = await shop.http.get(f"/orders/{order_id}")
    config = page_config(page.text)
    assert config["order"]["status"] == "awaiting_payment" and config["order"]["payable"]
    assert config["order"]["total"] == 2 * 1800 + 600 + 500
    assert config["clientSecret"].startswith("pi_")
    # checkout.js comes from the gateway, and the CSP lets only it run and frame.
    assert '<script src="http://gateway.test/checkout/v1/checkout.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self' http://gateway.test;" in csp and "frame-src http://gateway.test;" in csp
    assert "frame-ancestors 'none'" in csp
    creates = [r for r in shop.gateway.requests if r[1] == "/api/v1/payment/intent"]
    assert len(creates) == 1  # the page was loaded twice; the intent was created once
    assert creates[0][2]["idempotency-key"] == f"storefront-{order_id}-intent"
    (intent,) = shop.gateway.intents.values()
    assert intent["amount"] == 4700 and intent["metadata"] == {"orderId": order_id, "orderNumber": "1001"}
    # The cart is emptied once the order exists.
    assert "Your cart is empty" in (await shop.http.get("/cart")).text


async def test_empty_cart_checkout_goes_back_to_the_cart(shop: ShopHarness) -> None:
    r = await shop.http.post("/checkout")
    assert (r.status_code, r.headers["location"]) == (303, "/cart")


async def test_decline_then_another_card_pays_the_same_order(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_nsf_0123456789"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "payment_failed" and body["payable"]
    assert body["declineMessage"] == "Your card was declined: insufficient funds. Please try another card."
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    assert r.json()["status"] == "paid" and r.json()["card"] == "Visa •••• 4242"
    # Paying a paid order is refused, and says so.
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_9999999999"})
    assert r.status_code == 409 and r.json()["order"]["status"] == "paid"
    assert len(shop.gateway.intents) == 1


async def test_processing_then_paid_through_the_status_call(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_slow_0123456789"})
    assert r.json()["status"] == "processing"
    assert (await shop.http.get(f"/orders/{order_id}/status?wait=1")).json()["status"] == "processing"
    (intent_id,) = shop.gateway.intents
    shop.gateway.settle(intent_id)
    assert (await shop.http.get(f"/orders/{order_id}/status?wait=1")).json()["status"] == "paid"


async def test_pay_refuses_bad_tokens_and_cross_site_requests(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    for body in ({"token": "4242424242424242"}, {"token": ""}, {}, []):
        r = await shop.http.post(f"/orders/{order_id}/pay", json=body)
        assert r.status_code == 400
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"},
                             headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    assert (await shop.http.post("/orders/ord_nope000000000/pay", json={"token": "tok_ok_0123456789"})).status_code == 404
    assert not [r for r in shop.gateway.requests if r[1] == "/api/v1/payment/process"]


async def test_a_token_with_a_trailing_line_end_is_refused_not_a_500(shop: ShopHarness) -> None:
    # re.match with "$" also matched before a final "\n": the token passed, went into the
    # idempotency key, and the SDK refused that key (ValueError): a 500.
    order_id = await shop.place_order()
    r = await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789\n"})
    assert r.status_code == 400
    assert not [r for r in shop.gateway.requests if r[1] == "/api/v1/payment/process"]


async def test_pay_answers_400_to_json_nested_too_deeply(shop: ShopHarness) -> None:
    # 15 KiB of "[" (under the 16 KiB limit) was a RecursionError out of read_json: a 500.
    order_id = await shop.place_order()
    for body in (b"[" * 15_000, b'{"token":' * 1_500):
        r = await shop.http.post(f"/orders/{order_id}/pay", content=body,
                                 headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "The card form did not send a valid token."
    assert not [r for r in shop.gateway.requests if r[1] == "/api/v1/payment/process"]


async def test_admin_needs_the_password(shop: ShopHarness) -> None:
    r = await shop.http.post("/admin/login", data={"password": "guess"})
    assert r.status_code == 401
    assert (await shop.http.get("/admin/api/orders/ord_x")).status_code == 401
    assert 'name="password"' in (await shop.http.get("/admin")).text
    await shop.login()
    assert "Orders" in (await shop.http.get("/admin")).text


def _hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


async def _admin_refund(shop: ShopHarness, order_id: str, amount: str, **extra: str) -> Any:
    page = (await shop.http.get(f"/admin/orders/{order_id}")).text
    fields = dict(re.findall(r'name="(csrf|key)" value="([^"]+)"', page))
    return await shop.http.post(f"/admin/orders/{order_id}/refund",
                                data={**fields, "amount": amount, "reason": "damaged", **extra})


async def test_partial_then_full_refund_from_the_admin(shop: ShopHarness) -> None:
    order_id = await shop.place_order("tw-dripper-02")  # 3200 + 500 shipping
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    await shop.login()
    r = await _admin_refund(shop, order_id, "5.00")
    assert r.status_code == 303
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"]) == ("partially_refunded", 500)
    assert shop.gateway.refunds[0]["amount"] == 500 and shop.gateway.refunds[0]["reason"] == "damaged"
    # More than what remains is refused before the gateway hears of it.
    assert (await _admin_refund(shop, order_id, "32.01")).status_code == 400
    assert (await _admin_refund(shop, order_id, "abc")).status_code == 400
    r = await _admin_refund(shop, order_id, "32.00")  # all that is left: confirmed first
    assert r.status_code == 200 and len(shop.gateway.refunds) == 1
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data=_hidden_fields(r.text))
    assert r.status_code == 303
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"]) == ("refunded", 3700)
    assert [x["amount"] for x in order["refunds"]] == [500, 3200]
    customer_view = page_config((await shop.http.get(f"/orders/{order_id}")).text)["order"]
    assert customer_view["statusLabel"] == "Refunded" and customer_view["amountRefundedLabel"] == "$37.00"


async def test_refund_form_needs_its_csrf_token_and_a_paid_order(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    await shop.login()
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={"amount": "1.00", "csrf": "forged"})
    assert r.status_code == 403
    assert (await _admin_refund(shop, order_id, "1.00")).status_code == 409  # not paid
    assert shop.gateway.refunds == []


async def test_a_double_submitted_refund_form_refunds_once(shop: ShopHarness) -> None:
    order_id = await shop.place_order("tw-dripper-02")
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    await shop.login()
    page = (await shop.http.get(f"/admin/orders/{order_id}")).text
    fields = dict(re.findall(r'name="(csrf|key)" value="([^"]+)"', page))
    for _ in range(2):
        await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": "3.00"})
    assert len(shop.gateway.refunds) == 1
    assert (await shop.order(order_id))["amountRefunded"] == 300


async def test_order_ids_are_unguessable_and_unknown_ones_are_404(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    assert re.fullmatch(r"ord_[A-Za-z0-9_-]{24}", order_id)
    assert (await shop.http.get("/orders/1001")).status_code == 404
    assert (await shop.http.get("/orders/ord_000000000000000000000000")).status_code == 404
