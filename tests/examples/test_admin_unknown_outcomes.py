"""A refund, capture or void whose answer never came back may have happened: the admin is
told so — not "failed", which invites a second one under a new key — and the same form
again is replayed by the gateway, never done twice."""
from __future__ import annotations

import re

from tests.examples.conftest import ShopHarness
from tests.examples.test_ship_then_capture import (
    MADE_TO_ORDER,
    admin_capture,
    admin_void,
    authorized_order,
)
from tests.examples.test_shop_flow import _admin_refund


def _error(html: str) -> str:
    match = re.search(r'id="admin-error">([^<]*)<', html)
    return match.group(1) if match else ""


async def test_a_refund_without_an_answer_is_not_called_failed_and_the_same_form_refunds_once(
        shop: ShopHarness) -> None:
    order_id = await shop.place_order("tw-dripper-02")
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    await shop.login()
    shop.gateway.answers_lost.add("/api/v1/payment/refund")
    r = await _admin_refund(shop, order_id, "5.00")
    assert r.status_code == 502
    assert _error(r.text) == ("No answer from the gateway: this refund may have been made. Submit the same form "
                              "again, unchanged, to find out; it is never refunded twice.")
    assert len(shop.gateway.refunds) == 1  # it was made
    # The page kept the form as sent (its key too): sent again, the gateway replays it.
    shop.gateway.answers_lost.clear()
    fields = dict(re.findall(r'name="(csrf|key)" value="([^"]+)"', r.text))
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": "5.00", "reason": "damaged"})
    assert r.status_code == 303
    assert len(shop.gateway.refunds) == 1
    order = await shop.order(order_id)
    assert (order["amountRefunded"], [x["amount"] for x in order["refunds"]]) == (500, [500])


async def test_a_capture_without_an_answer_is_not_called_failed(shop: ShopHarness) -> None:
    order_id = await authorized_order(shop, MADE_TO_ORDER)
    await shop.login()
    shop.gateway.answers_lost.add("/api/v1/payment/capture")
    r = await admin_capture(shop, order_id, [0])
    assert r.status_code == 502
    assert _error(r.text).startswith("No answer from the gateway: the capture may have gone through.")
    assert len(shop.gateway.captures) == 1


async def test_a_void_without_an_answer_is_not_called_failed(shop: ShopHarness) -> None:
    order_id = await authorized_order(shop, MADE_TO_ORDER)
    await shop.login()
    shop.gateway.answers_lost.add("/api/v1/payment/cancel")
    r = await admin_void(shop, order_id)
    assert r.status_code == 502
    assert _error(r.text).startswith("No answer from the gateway: the void may have gone through.")
    assert shop.gateway.voids == [next(iter(shop.gateway.intents))]
