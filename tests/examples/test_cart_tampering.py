"""Requests the shop's own pages would never send — a price, a currency, a negative, huge
or fractional quantity, an unknown product — are refused with a message (400, the cart
unchanged) or, for prices and currencies, ignored: the order is priced from the catalogue."""
from __future__ import annotations

import re

import pytest

from tests.examples.conftest import ShopHarness
from tests.examples.test_shop_flow import page_config


def _cart_error(html: str) -> str:
    match = re.search(r'id="cart-error">([^<]*)<', html)
    return match.group(1) if match else ""


def _cart(html: str) -> dict[str, str]:
    return dict(re.findall(r'name="sku" value="([^"]+)">\s*<label[^>]*>Quantity</label>\s*'
                           r'<input class="qty"[^>]* value="([0-9]+)"', html))


@pytest.mark.parametrize(("form", "message"), [
    ({"sku": "tw-nope"}, "That product is not in our catalogue."),
    ({"sku": ""}, "That product is not in our catalogue."),
    ({"sku": "tw-mug-12", "quantity": "-5"}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "0"}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "1.5"}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "1_0"}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "\uff12"}, "Choose a quantity from 1 to 10."),  # a full-width 2
    ({"sku": "tw-mug-12", "quantity": "11"}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "9" * 5000}, "Choose a quantity from 1 to 10."),
    ({"sku": "tw-mug-12", "quantity": "3\n"}, "Choose a quantity from 1 to 10."),  # "$" took a final line end
    ({"sku": "tw-mug-12", "quantity": "9"}, "At most 10 of each item per order."),  # 2 already in the cart
])
async def test_a_tampered_add_is_refused_with_a_message(shop: ShopHarness, form: dict[str, str],
                                                        message: str) -> None:
    assert (await shop.http.post("/cart/add", data={"sku": "tw-mug-12", "quantity": "2"})).status_code == 303
    r = await shop.http.post("/cart/add", data=form)
    assert (r.status_code, _cart_error(r.text)) == (400, message)
    assert _cart((await shop.http.get("/cart")).text) == {"tw-mug-12": "2"}


@pytest.mark.parametrize(("form", "message"), [
    ({"sku": "tw-house-340", "quantity": "1"}, "That item is not in your cart."),
    ({"sku": "tw-mug-12", "quantity": "-3"}, "Choose a quantity from 0 to 10 (0 removes the item)."),
    ({"sku": "tw-mug-12", "quantity": ""}, "Choose a quantity from 0 to 10 (0 removes the item)."),
    ({"sku": "tw-mug-12"}, "Choose a quantity from 0 to 10 (0 removes the item)."),
    ({"sku": "tw-mug-12", "quantity": "abc"}, "Choose a quantity from 0 to 10 (0 removes the item)."),
    ({"sku": "tw-mug-12", "quantity": "1000"}, "Choose a quantity from 0 to 10 (0 removes the item)."),
])
async def test_a_tampered_update_is_refused_with_a_message(shop: ShopHarness, form: dict[str, str],
                                                           message: str) -> None:
    assert (await shop.http.post("/cart/add", data={"sku": "tw-mug-12", "quantity": "2"})).status_code == 303
    r = await shop.http.post("/cart/update", data=form)
    assert (r.status_code, _cart_error(r.text)) == (400, message)
    assert _cart((await shop.http.get("/cart")).text) == {"tw-mug-12": "2"}


async def test_the_shops_own_forms_still_work(shop: ShopHarness) -> None:
    await shop.http.post("/cart/add", data={"sku": "tw-mug-12"})
    await shop.http.post("/cart/add", data={"sku": "tw-mug-12", "quantity": "9"})
    assert _cart((await shop.http.get("/cart")).text) == {"tw-mug-12": "10"}
    assert (await shop.http.post("/cart/update", data={"sku": "tw-mug-12", "quantity": "3"})).status_code == 303
    assert (await shop.http.post("/cart/update", data={"sku": "tw-mug-12", "quantity": "0"})).status_code == 303
    assert "Your cart is empty" in (await shop.http.get("/cart")).text


async def test_prices_and_currencies_from_the_browser_are_never_used(shop: ShopHarness) -> None:
    r = await shop.http.post("/cart/add", data={"sku": "tw-mug-12", "quantity": "2", "price": "1",
                                                "unit_price": "1", "currency": "JPY", "total": "1"})
    assert r.status_code == 303
    r = await shop.http.post("/checkout", data={"amount": "1", "currency": "JPY", "total": "1"})
    order_id = r.headers["location"].rsplit("/", 1)[1]
    config = page_config((await shop.http.get(f"/orders/{order_id}")).text)
    r = await shop.http.post(f"/orders/{order_id}/pay",
                             json={"token": "tok_ok_0123456789", "amount": 1, "currency": "JPY"})
    assert r.status_code == 200 and r.json()["status"] == "paid"
    (intent,) = shop.gateway.intents.values()
    assert (intent["amount"], intent["currency"], config["order"]["total"]) == (2 * 2400 + 500, "USD", 5300)
