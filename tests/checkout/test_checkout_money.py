"""Amounts are formatted from integer minor units, per currency exponent, without floats."""

from __future__ import annotations

import pytest

from paygate_checkout import currency_exponent, format_amount


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1999, "USD", "$19.99"),
        (1999, "usd", "$19.99"),
        (1, "USD", "$0.01"),
        (10, "USD", "$0.10"),
        (100, "EUR", "€1.00"),
        (99999999, "USD", "$999,999.99"),
        (1999, "JPY", "¥1,999"),
        (1, "JPY", "¥1"),
        (99999999, "JPY", "¥99,999,999"),
        (1999, "KRW", "₩1,999"),
        (5, "CHF", "CHF 0.05"),
        (123456789, "KWD", "KWD 123,456.789"),
        (1, "BHD", "BHD 0.001"),
        (12345, "CLF", "CLF 1.2345"),
        (250000, "GBP", "£2,500.00"),
        (0, "USD", "$0.00"),
        (-1999, "USD", "-$19.99"),
        (1999, "CAD", "CA$19.99"),
        (1999, "XOF", "XOF 1,999"),
    ],
)
def test_format_amount(amount: int, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_exponents() -> None:
    assert (currency_exponent("USD"), currency_exponent("JPY"), currency_exponent("KWD")) == (2, 0, 3)


def test_large_amounts_are_exact() -> None:
    # A float would round this; integer formatting does not.
    assert format_amount(9007199254740993, "USD") == "$90,071,992,547,409.93"


@pytest.mark.parametrize("amount", [19.99, True, "1999", None])
def test_amount_must_be_an_int(amount: object) -> None:
    with pytest.raises(TypeError):
        format_amount(amount, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["US", "USDX", "U$D", "", "12 "])
def test_currency_must_be_a_code(currency: str) -> None:
    with pytest.raises(ValueError):
        format_amount(100, currency)
