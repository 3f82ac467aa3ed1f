"""Cart math in integer cents, money formatting/parsing, and the signed cart cookie."""
from __future__ import annotations

import pytest
from storefront.cart import FREE_SHIPPING_FROM, MAX_QUANTITY, SHIPPING_FEE, Cart, compute_totals
from storefront.catalog import CATALOG, get_product
from storefront.cookies import CookieSigner
from storefront.money import format_decimal, format_money, parse_money


def test_every_price_is_an_integer_number_of_cents() -> None:
    for product in CATALOG:
        assert isinstance(product.price, int) and product.price > 0


def test_totals_add_up_in_cents_with_shipping_below_the_threshold() -> None:
    cart = Cart()
    cart.add("tw-filters-100")  # 600
    cart.add("tw-house-340", 2)  # 2 × 1800
    totals = cart.totals()
    assert (totals.subtotal, totals.shipping, totals.total, totals.item_count) == (4200, SHIPPING_FEE, 4700, 3)
    assert all(isinstance(v, int) for v in (totals.subtotal, totals.shipping, totals.total))


def test_shipping_is_free_from_the_threshold_and_for_an_empty_cart() -> None:
    cart = Cart({"tw-dripper-02": 1, "tw-house-340": 1})  # 3200 + 1800 = 5000
    assert cart.totals().subtotal == FREE_SHIPPING_FROM
    assert cart.totals().shipping == 0
    assert compute_totals([]).total == 0


def test_sums_that_floats_get_wrong_are_exact() -> None:
    # 0.1 + 0.2 != 0.3 in floats; ten 600-cent lines are exactly 6000.
    cart = Cart({"tw-filters-100": 10})
    assert cart.totals().subtotal == 6000
    assert format_money(cart.totals().total, "USD") == "$60.00"


def test_quantities_are_capped_and_zero_removes_a_line() -> None:
    cart = Cart()
    cart.add("tw-mug-12", 7)
    cart.add("tw-mug-12", 7)
    assert cart.items == {"tw-mug-12": MAX_QUANTITY}
    cart.set("tw-mug-12", 0)
    assert cart.items == {}
    with pytest.raises(ValueError):
        cart.add("tw-mug-12", 0)


def test_unknown_products_and_bad_quantities_are_ignored() -> None:
    cart = Cart({"no-such-sku": 3, "tw-mug-12": True, "tw-house-340": 2.5})  # type: ignore[dict-item]
    assert cart.items == {}
    assert get_product("no-such-sku") is None


def test_cart_survives_a_cookie_round_trip_and_refuses_tampering() -> None:
    signer = CookieSigner(b"k" * 32)
    cart = Cart({"tw-mug-12": 2, "tw-yirga-340": 1})
    token = signer.sign("cart", cart.to_data(), max_age_s=60)
    assert Cart.from_data(signer.unsign("cart", token)).items == cart.items

    payload, mac = token.split(".")
    forged = Cart({"tw-mug-12": 9}).to_data()
    forged_token = signer.sign("cart", forged, max_age_s=60).split(".")[0] + "." + mac
    assert signer.unsign("cart", forged_token) is None
    assert signer.unsign("admin", token) is None  # another purpose
    assert signer.unsign("cart", token, now=10**12) is None  # expired
    assert CookieSigner(b"x" * 32).unsign("cart", token) is None  # another key
    for garbage in ("", "abc", "a.b.c", "!!!.???", payload + "."):
        assert signer.unsign("cart", garbage) is None


def test_cookie_data_that_is_not_a_cart_gives_an_empty_cart() -> None:
    assert Cart.from_data({"items": [["tw-mug-12", -4], "junk", ["tw-mug-12"]]}).items == {}
    assert Cart.from_data(None).items == {}


@pytest.mark.parametrize(("amount", "currency", "text"), [
    (1999, "USD", "$19.99"), (5, "USD", "$0.05"), (0, "USD", "$0.00"), (123456789, "USD", "$1,234,567.89"),
    (-500, "USD", "-$5.00"), (1500, "JPY", "¥1,500"), (250, "EUR", "€2.50"),
])
def test_format_money(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text


def test_format_money_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_money(19.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        format_money(True, "USD")


@pytest.mark.parametrize(("text", "cents"), [
    ("12.50", 1250), ("12.5", 1250), ("12", 1200), ("$1,200.05", 120005), (" 0.01 ", 1), ("0.10", 10),
])
def test_parse_money(text: str, cents: int) -> None:
    assert parse_money(text, "USD") == cents
    assert parse_money(format_decimal(cents, "USD"), "USD") == cents


@pytest.mark.parametrize("text", ["", "-5", "1.234", "abc", "1e3", "12.", ".5", "NaN"])
def test_parse_money_refuses_what_is_not_an_amount(text: str) -> None:
    with pytest.raises(ValueError):
        parse_money(text, "USD")


@pytest.mark.parametrize("text", ["٣.٥", "１０", "$１２.50", "12.５0", "۱۲", "१२"])
def test_parse_money_takes_only_ascii_digits(text: str) -> None:
    # int() reads any Unicode decimal digit: "٣.٥" was 3.50 and "１０" was 10.
    with pytest.raises(ValueError, match="enter an amount such as 12.50"):
        parse_money(text, "USD")


def test_parse_money_knows_currencies_without_minor_units() -> None:
    assert parse_money("1500", "JPY") == 1500
    with pytest.raises(ValueError):
        parse_money("15.5", "JPY")
