"""A refund is "refunded" only once the processor confirms it: a pending or unknown one is
reserved (not refundable twice) and shown as pending, to the admin and to the customer."""
from __future__ import annotations

import re

from tests.examples.conftest import ShopHarness
from tests.examples.test_shop_flow import _admin_refund, _hidden_fields, page_config
from tests.examples.test_webhooks import deliver, event


async def _paid(shop: ShopHarness) -> str:
    order_id = await shop.place_order("tw-dripper-02")  # 3200 + 500 shipping
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    await shop.login()
    return order_id


def _notice(html: str) -> str:
    match = re.search(r'id="admin-notice">([^<]*)<', html)
    return match.group(1) if match else ""


async def test_an_unconfirmed_refund_is_pending_until_the_processor_confirms_it(shop: ShopHarness) -> None:
    order_id = await _paid(shop)
    shop.gateway.refund_status = "unknown"  # the processor's answer was lost: the reconciler will ask
    r = await _admin_refund(shop, order_id, "6.00")
    assert r.status_code == 303
    admin_page = (await shop.http.get(r.headers["location"])).text
    assert "the processor has not confirmed it yet" in _notice(admin_page)
    assert re.search(r'id="admin-order-status">Paid<', admin_page)
    assert re.search(r'id="admin-refund-pending">\$6\.00 ', admin_page)
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"]) == ("paid", 0) and order["amountRefundPending"] == 600
    customer = page_config((await shop.http.get(f"/orders/{order_id}")).text)["order"]
    assert customer["status"] == "paid" and customer["amountRefunded"] == 0
    assert customer["detail"].endswith("A refund of $6.00 is being processed.")
    assert "refunded to your card" not in customer["detail"]

    # Reserved all the same: only the rest can be refunded.
    assert (await _admin_refund(shop, order_id, "31.01")).status_code == 400

    # The processor confirms it (the reconciler): the gateway's refund.succeeded.
    (refund,) = shop.gateway.refunds
    r = await deliver(shop, event("refund.succeeded", {**refund, "status": "succeeded"}), "evt_refund_1")
    assert r.status_code == 200
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"], order["amountRefundPending"]) == (
        "partially_refunded", 600, 0)


async def test_a_pending_refund_of_everything_is_not_called_refunded(shop: ShopHarness) -> None:
    order_id = await _paid(shop)
    shop.gateway.refund_status = "pending"
    confirm = await _admin_refund(shop, order_id, "37.00")
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data=_hidden_fields(confirm.text))
    assert r.status_code == 303
    order = await shop.order(order_id)
    assert order["status"] == "paid" and order["amountRefundPending"] == 3700
    admin_page = (await shop.http.get(f"/admin/orders/{order_id}")).text
    assert "Fully refunded." not in admin_page and "of refunds not confirmed yet" in admin_page
    customer = page_config((await shop.http.get(f"/orders/{order_id}")).text)["order"]
    assert customer["headline"] != "Order refunded"


async def test_a_refused_refund_says_so(shop: ShopHarness) -> None:
    order_id = await _paid(shop)
    shop.gateway.refund_status = "failed"
    r = await _admin_refund(shop, order_id, "6.00")
    admin_page = (await shop.http.get(r.headers["location"])).text
    assert "failed: the processor refused it; nothing was refunded" in admin_page
    assert _notice(admin_page) == ""
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"], order["amountRefundPending"]) == ("paid", 0, 0)


async def test_the_refund_notice_names_only_this_orders_refunds(shop: ShopHarness) -> None:
    order_id = await _paid(shop)
    # The query string is anyone's to write: a link must not put words in the back office.
    page = (await shop.http.get(f"/admin/orders/{order_id}?refunded=approved.+Call+555-0100+to+confirm")).text
    assert "Call 555-0100" not in page


async def test_a_pending_refund_the_processor_refuses_is_released(shop: ShopHarness) -> None:
    # A refused refund sends no webhook: the shop reads the refund again (refunds.get).
    order_id = await _paid(shop)
    shop.gateway.refund_status = "pending"
    await _admin_refund(shop, order_id, "6.00")
    (refund,) = shop.gateway.refunds
    shop.gateway.settle_refund(refund["refundId"], "failed")
    admin_page = (await shop.http.get(f"/admin/orders/{order_id}")).text
    assert "admin-refund-pending" not in admin_page
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"], order["amountRefundPending"]) == ("paid", 0, 0)
    assert [r["status"] for r in order["refunds"]] == ["failed"]
    # What it had reserved can be refunded again.
    assert (await _admin_refund(shop, order_id, "37.00")).status_code == 200  # the confirmation page
    customer = page_config((await shop.http.get(f"/orders/{order_id}")).text)["order"]
    assert "being processed" not in customer["detail"]


async def test_the_customer_page_learns_a_confirmed_refund_without_its_webhook(shop: ShopHarness) -> None:
    order_id = await _paid(shop)
    shop.gateway.refund_status = "unknown"
    await _admin_refund(shop, order_id, "6.00")
    (refund,) = shop.gateway.refunds
    shop.gateway.settle_refund(refund["refundId"], "succeeded")
    customer = page_config((await shop.http.get(f"/orders/{order_id}")).text)["order"]
    assert (customer["status"], customer["amountRefunded"]) == ("partially_refunded", 600)
