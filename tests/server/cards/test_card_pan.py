"""Luhn, brand detection and the plaintext card-number detector (SPEC §4)."""

from __future__ import annotations

from typing import Any

import pytest

from paygate_server.cards import (
    BRANDS,
    card_brand,
    contains_card_number,
    last4,
    luhn_valid,
)

# Every test card of SPEC §7 must pass Luhn.
SPEC_TEST_CARDS = [
    "4242424242424242", "5555555555554444", "378282246310005", "4000000000000002",
    "4000000000009995", "4000000000000069", "4000000000000127", "4000000000000119",
    "4000000000001018", "4000000000001026", "4000000000001034", "4000000000001042",
]


@pytest.mark.parametrize("number", SPEC_TEST_CARDS)
def test_spec_test_cards_are_luhn_valid(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("79927398713", True),
        ("79927398710", False),
        ("4242424242424241", False),
        ("0", False),
        ("00", True),
        ("", False),
        ("4242 4242 4242 4242", False),  # only digits
        ("４２４２", False),  # full-width digits are not ASCII digits
        ("6011111111111117", True),
        ("6011111111111118", False),
    ],
)
def test_luhn_table(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000056655665556", "visa"),
        ("5555555555554444", "mastercard"),
        ("5105105105105100", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("2720991234567890", "mastercard"),
        ("2721001234567890", "unknown"),
        ("2220991234567890", "unknown"),
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("6011111111111117", "discover"),
        ("6445644564456445", "discover"),
        ("6500000000000002", "discover"),
        ("6221260000000000", "discover"),
        ("6229250000000000", "discover"),
        ("6221250000000000", "unionpay"),
        ("6200000000000005", "unionpay"),
        ("8100000000000000", "unionpay"),
        ("3566002020360505", "jcb"),
        ("3528000000000000", "jcb"),
        ("3589000000000000", "jcb"),
        ("3590000000000000", "unknown"),
        ("30569309025904", "diners"),
        ("36227206271667", "diners"),
        ("3095000000000000", "diners"),
        ("38520000023237", "diners"),
        ("1234567812345678", "unknown"),
        ("", "unknown"),
        ("abcd", "unknown"),
    ],
)
def test_brand_table(number: str, brand: str) -> None:
    assert card_brand(number) == brand
    assert brand in BRANDS


def test_last4() -> None:
    assert last4("378282246310005") == "0005"


@pytest.mark.parametrize(
    "value",
    [
        "4242424242424242",
        "4242-4242-4242-4242",
        "4242 4242 4242 4242",
        " 4242 4242 4242 4242 ",
        "4242 4242-4242 4242",
        "3782 822463 10005",
        "378282246310005",
        "5555555555554444",
        "4222222222222",  # 13-digit Visa
        "6011000990139424",
        "3056 9309 0259 04",
        "6200000000000005",
        "4000000000000000006",  # 19 digits
        # Issue #15.2: every separator a person or a program plausibly puts between groups.
        "4242  4242 4242 4242",  # two spaces
        "4242--4242-4242-4242",  # two dashes
        "4242\t4242\t4242\t4242",  # tabs
        "4242\u00a04242\u00a04242\u00a04242",  # no-break spaces
        "4242\u202f4242\u20094242\u30004242",  # narrow no-break, thin, ideographic spaces
        "4242\u200b4242\u200b4242\u200b4242",  # zero-width spaces (copy-paste)
        "4242\u20134242\u20144242\u22124242",  # en dash, em dash, minus sign
        "4242 - 4242 - 4242 - 4242",
        "4242.4242.4242.4242",
        "4242 . 4242 . 4242 . 4242",
        "4242/4242/4242/4242",
        "4242\\4242\\4242\\4242",
        "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12",  # full-width
        "2223 0031 2200 3222",  # Mastercard 2-series
        "4242 4242 4242 4242x",  # inside text
        "tok_4242424242424242",
    ],
)
def test_card_numbers_are_found(value: str) -> None:
    assert contains_card_number(value)


@pytest.mark.parametrize(
    "value",
    [
        "4242424242424241",  # Luhn fails
        "424242424242",  # 12 digits (Luhn-valid, too short)
        "42424242424242424242",  # 20 digits
        "4242    4242 4242 4242",  # four spaces: not one number any more
        "4242.4242/4242.4242",  # dots and slashes mixed
        "4242.4242 4242.4242",  # two families: "24.99 35.99" is a price list
        "4242, 4242, 4242, 4242",  # a list of numbers
        "1697379751003",  # a millisecond Unix timestamp (Luhn-valid, but starts with 1)
        "20240101000006",  # a compact timestamp (Luhn-valid, but 20/21 is not issued)
        "2023-10-15T14:22:31Z",
        "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        "",
    ],
)
def test_what_is_no_card_number(value: str) -> None:
    assert not contains_card_number(value)


def test_twelve_digit_luhn_valid_number_is_not_flagged() -> None:
    assert luhn_valid("424242424242")
    assert not contains_card_number({"ref": "424242424242"})
    assert not contains_card_number({"ref": 424242424242})


def test_millisecond_timestamp_fixture_really_passes_luhn() -> None:
    # The point of the first-digit rule: without it this timestamp would be refused.
    assert luhn_valid("1697379751003")


@pytest.mark.parametrize(
    "document",
    [
        {"metadata": {"note": "4242424242424242"}},
        {"metadata": {"note": "4242-4242-4242-4242"}},
        {"metadata": {"note": "card: 4242 4242 4242 4242, exp 12/34"}},
        {"description": "Order 1042 4242 4242 4242 4242"},
        {"productDetails": {"items": [{"sku": "mug", "extra": ["x", {"deep": "5555555555554444"}]}]}},
        {"productDetails": {"pan": 4242424242424242}},
        {"productDetails": {"pan": 4242424242424242.0}},
        {"productDetails": {"pan": -4242424242424242}},
        {"metadata": {"4242424242424242": "as a key"}},
        ["378282246310005"],
        "4242424242424242",
        4242424242424242,
        {"paymentDetails": {"encryptedCard": "x", "card": "4242424242424242"}},
        # Issue #15.1: a key named encryptedCard exempts nothing by its name.
        {"paymentDetails": {"encryptedCard": "4242424242424242"}},
        {"encryptedCard": ["4242424242424242"]},
        {"productDetails": {"encryptedCard": {"number": "5105105105105100", "cvc": "931"}}},
        {"metadata": {"encryptedCard": "5105 1051 0510 5100"}},
        # Issue #15.2: separators and places.
        {"metadata": {"note": "card 4242  4242\t4242\u00a04242 thanks"}},
        {"description": "paid with 4242.4242.4242.4242, exp 12/34"},
        {"description": "exp 12/34 4242/4242/4242/4242"},
        [("4242424242424242", "")],  # a query-string key with no value
        {"note": "+1 555 0100, card 4242 4242 4242 4242"},
    ],
)
def test_contains_card_number(document: Any) -> None:
    assert contains_card_number(document)


@pytest.mark.parametrize(
    "document",
    [
        {"amount": 1999, "currency": "USD"},
        {"metadata": {"orderId": "1042", "ts": "2023-10-15T14:22:31Z"}},
        {"metadata": {"epochMs": "1697379751003", "epochS": 1697379751}},
        {"productDetails": {"createdAtMs": 1697379751003}},
        {"metadata": {"uuid": "a1b2c3d4-e5f6-7890-abcd-ef1234567890"}},
        {"metadata": {"uuid": "12345678-1234-5678-1234-567812345678"}},
        {"metadata": {"phone": "+1 415 555 2671"}},
        {"metadata": {"phone": "+4915112345678", "mobile": "+49 151 1234 5678"}},
        {"metadata": {"when": "2024-10-15 14:22:31", "at": "25.12.2023 10.30.00"}},
        {"metadata": {"stamp": "20240101000006", "order": "A-2024-10-15-00042"}},
        {"metadata": {"ref": "424242424242"}},
        {"metadata": {"almost": "4242424242424241"}},
        {"metadata": {"long": "42424242424242424242424242"}},
        {"flag": True, "none": None, "ratio": 0.5, "big": 1e300},
        [],
        {},
        "",
    ],
)
def test_does_not_contain_card_number(document: Any) -> None:
    assert not contains_card_number(document)


def test_deeply_nested_document_does_not_hit_the_recursion_limit() -> None:
    document: Any = "4242424242424242"
    for _ in range(5000):
        document = {"a": [document]}
    assert contains_card_number(document)


def test_span_search_matches_a_brute_force_search() -> None:
    """The prefix-sum Luhn over digit groups agrees with checking every span directly."""
    import random

    rng = random.Random(20240601)

    def brute_force(text: str) -> bool:
        groups = text.split(" ")
        for start in range(len(groups)):
            digits = ""
            for group in groups[start:]:
                digits += group
                if len(digits) > 19:
                    break
                if (13 <= len(digits) and digits[0] in "23456" and not digits.startswith(("20", "21"))
                        and luhn_valid(digits)):
                    return True
        return False

    found = 0
    for _ in range(20000):
        groups = [
            "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8)))
            for _ in range(rng.randint(1, 6))
        ]
        text = " ".join(groups)
        expected = brute_force(text)
        found += expected
        assert contains_card_number(text) is expected, text
    assert found > 100  # the sample does exercise positive cases
