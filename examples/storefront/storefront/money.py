"""Money as integers in the currency's minor unit (cents), never floats.

``format_money(1999, "USD") == "$19.99"``; ``parse_money("19.99", "USD") == 1999``.
"""
from __future__ import annotations

import re

__all__ = ["CURRENCY_EXPONENTS", "format_decimal", "format_money", "parse_money"]

#: Digits after the decimal point, per ISO 4217, for the currencies the shop can show.
CURRENCY_EXPONENTS: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "JPY": 0}
_SYMBOLS: dict[str, str] = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "JPY": "¥"}
# [0-9], not \d: \d also takes "٣" or "１", which int() reads as 3 or 1 (ASCII digits only,
# as the gateway's console reads amounts).
_AMOUNT = re.compile(r"([0-9]{1,9})(?:\.([0-9]+))?")


def _exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def _require_int(amount: object) -> int:
    # bool is an int subclass; a float is the bug this module exists to prevent.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"amounts are integers in minor units, not {type(amount).__name__}")
    return amount


def format_money(amount: int, currency: str) -> str:
    """``1999, "USD"`` → ``"$19.99"``; ``-500`` → ``"-$5.00"``; ``1500, "JPY"`` → ``"¥1,500"``."""
    value = _require_int(amount)
    exponent = _exponent(currency)
    sign = "-" if value < 0 else ""
    major, minor = divmod(abs(value), 10**exponent)
    text = f"{major:,}"
    if exponent:
        text += f".{minor:0{exponent}d}"
    return f"{sign}{_SYMBOLS.get(currency, currency + ' ')}{text}"


def format_decimal(amount: int, currency: str) -> str:
    """``1999, "USD"`` → ``"19.99"``: what ``parse_money`` reads back (form fields)."""
    value = _require_int(amount)
    exponent = _exponent(currency)
    major, minor = divmod(abs(value), 10**exponent)
    text = f"{'-' if value < 0 else ''}{major}"
    return f"{text}.{minor:0{exponent}d}" if exponent else text


def parse_money(text: str, currency: str) -> int:
    """What an operator types (``"12.5"``, ``"$12.50"``, ``"1,200"``) → minor units.

    Raises ``ValueError`` for anything else: negative numbers, more decimals than the
    currency has, or garbage. The decimal part is handled as digits, never as a float.
    """
    exponent = _exponent(currency)
    cleaned = text.strip().replace(",", "").replace(" ", "")
    symbol = _SYMBOLS.get(currency, "")
    if symbol and cleaned.startswith(symbol):
        cleaned = cleaned[len(symbol):]
    match = _AMOUNT.fullmatch(cleaned)
    if match is None:
        raise ValueError("enter an amount such as 12.50")
    major, minor = match.group(1), match.group(2) or ""
    if len(minor) > exponent:
        raise ValueError(f"{currency} amounts have at most {exponent} decimals")
    scale: int = 10**exponent
    return int(major) * scale + int(minor.ljust(exponent, "0") or "0")
