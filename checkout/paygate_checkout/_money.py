"""Formatting integer minor units for display, with integer and string operations only."""

from __future__ import annotations

from typing import Final

__all__ = ["currency_exponent", "format_amount"]

# ISO 4217 minor-unit exponents that are not 2. Everything else has two decimals.
_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(
        [
            "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX",
            "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}

# Symbols only where they are unambiguous to a customer; other currencies show their code.
_SYMBOLS: Final[dict[str, str]] = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "KRW": "₩",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "HKD": "HK$",
    "SGD": "S$",
    "MXN": "MX$",
    "BRL": "R$",
    "CNY": "CN¥",
    "ILS": "₪",
    "VND": "₫",
    "PHP": "₱",
    "NGN": "₦",
}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency``'s minor unit (JPY 0, USD 2, KWD 3)."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_amount(amount: int, currency: str) -> str:
    """``1999, "USD"`` → ``"$19.99"``; ``1999, "JPY"`` → ``"¥1,999"``; ``5, "CHF"`` → ``"CHF 0.05"``.

    Integer arithmetic and string slicing only: no float ever sees the amount.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int in minor units")
    code = currency.upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError("currency must be an ISO 4217 code")
    exponent = currency_exponent(code)
    sign = "-" if amount < 0 else ""
    digits = str(abs(amount)).rjust(exponent + 1, "0")
    whole, fraction = (digits[:-exponent], digits[-exponent:]) if exponent else (digits, "")
    grouped = f"{int(whole):,}"
    number = f"{grouped}.{fraction}" if fraction else grouped
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{code} {number}"
