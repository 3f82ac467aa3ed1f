"""One cart, one order: a double-clicked Checkout or a browser's retry of the POST (its
answer lost, the cart cookie still there) lands on the order already made."""
from __future__ import annotations

import asyncio

from tests.examples.conftest import SHOP, ShopHarness


async def _orders_in_admin(shop: ShopHarness) -> int:
    await shop.login()
    return (await shop.http.get("/admin")).text.count('<tr data-order="')


async def test_a_double_clicked_checkout_makes_one_order(shop: ShopHarness) -> None:
    await shop.http.post("/cart/add", data={"sku": "tw-mug-12"})
    # Both requests leave with the same cart, before either answer (and its cookie deletion) arrives.
    async with shop.client(origin=SHOP, cookie=f"tw_cart={shop.http.cookies['tw_cart']}") as browser:
        first, second = await asyncio.gather(*(browser.post("/checkout") for _ in range(2)))
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await _orders_in_admin(shop) == 1


async def test_a_retried_checkout_after_a_lost_answer_lands_on_the_same_order(shop: ShopHarness) -> None:
    await shop.http.post("/cart/add", data={"sku": "tw-house-340"})
    cart_cookie = shop.http.cookies["tw_cart"]
    first = await shop.http.post("/checkout")
    async with shop.client(origin=SHOP, cookie=f"tw_cart={cart_cookie}") as browser:
        retry = await browser.post("/checkout")  # its answer never arrived: the cookie is still there
    assert retry.headers["location"] == first.headers["location"]
    # Another cart is another order.
    await shop.http.post("/cart/add", data={"sku": "tw-house-340"})
    await shop.http.post("/cart/add", data={"sku": "tw-mug-12"})
    other = await shop.http.post("/checkout")
    assert other.headers["location"] != first.headers["location"]
    assert await _orders_in_admin(shop) == 2


async def test_the_same_contents_ordered_again_are_another_order(shop: ShopHarness) -> None:
    # The order is keyed by the cart cookie: two carts with the same contents, written in
    # the same second (the expiry's unit), had the same cookie and so the same order.
    from storefront.cart import Cart

    writer = shop.app.state.shop
    assert writer.cart_cookie(Cart({"tw-mug-12": 1})) != writer.cart_cookie(Cart({"tw-mug-12": 1}))
    first = await shop.place_order("tw-mug-12")
    second = await shop.place_order("tw-mug-12")
    assert first != second
    assert await _orders_in_admin(shop) == 2
