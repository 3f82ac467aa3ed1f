"""ISO 4217 currencies in circulation and their minor-unit exponents.

Amounts are integers in the minor unit (SPEC §2); the exponent says how to display them
(JPY 0: 1999 is ¥1999; USD 2: 1999 is $19.99; KWD 3). :func:`format_minor` and
:func:`parse_major` convert between the two by string digits alone — never a float, so
"0.29" is 29 cents exactly.

Exceptions::

    ValueError
     └── AmountError   a typed amount that is not one of the currency (the message says why)
"""
from __future__ import annotations

import re

__all__ = ["EXPONENTS", "MAX_AMOUNT", "AmountError", "currency_problem", "format_minor", "is_currency",
           "parse_major"]

# The largest amount (minor units) an intent, a capture or a refund takes. Here, not in
# intents/schemas.py, so that `paygate bench` checks its --amount against it without
# bringing SQLAlchemy into `paygate --help`.
MAX_AMOUNT = 99_999_999

_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB "
    "EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS "
    "KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
    "MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
    "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS "
    "UAH USD USN UZS VED VES WST XCD YER ZAR ZMW ZWG"
)

EXPONENTS: dict[str, int] = {
    **{c: 2 for c in _TWO.split()},
    **{c: 0 for c in _ZERO.split()},
    **{c: 3 for c in _THREE.split()},
    **{c: 4 for c in _FOUR.split()},
}


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code in EXPONENTS


def currency_problem(code: object) -> str | None:
    """Why ``code`` is not a currency the gateway takes, in words for an error message, or
    None when it is one. A well-formed code that is not in circulation (``XXX``, ``XTS``,
    a typo like ``USX``) is "not supported"; only a malformed one is told about the format."""
    if is_currency(code):
        return None
    if isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha() and code.isupper():
        return f"currency {code} is not supported; use an ISO 4217 currency in circulation, like USD"
    return "currency must be an upper-case ISO 4217 code, like USD"


class AmountError(ValueError):
    """A typed amount :func:`parse_major` refuses; ``str()`` is a message for a person."""


# Digits, then at most one point and digits: no sign, no exponent, no grouping.
_MAJOR = re.compile(r"([0-9]+)(?:\.([0-9]*))?|\.([0-9]+)")
_MAX_DIGITS = 30  # far past any amount; refused before int() sees a long string


def format_minor(amount: int, currency: str) -> str:
    """``amount`` minor units as the major unit's digits: 1250 USD → "12.50", 1250 JPY →
    "1250", -5 USD → "-0.05". An unknown currency shows the minor units as they are."""
    exponent = EXPONENTS.get(currency, 0)
    sign, digits = ("-" if amount < 0 else ""), str(abs(amount))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def parse_major(text: str, currency: str) -> int:
    """The minor units of an amount typed in the major unit: "12.50" USD → 1250, "1250"
    JPY → 1250, "12.5" USD → 1250. AmountError for anything else: a sign, letters, more
    decimals than the currency has ("12.505" USD, "12.5" JPY), or an unknown currency."""
    if currency not in EXPONENTS:
        raise AmountError(f"{currency[:10]!r} is not a currency the gateway takes")
    text = text.strip()
    if not text:
        raise AmountError("enter an amount")
    if len(text) > _MAX_DIGITS:
        raise AmountError("the amount is too long")
    match = _MAJOR.fullmatch(text)
    if match is None:
        raise AmountError(f"the amount must be digits with at most one decimal point, like "
                          f"{format_minor(1250, currency)}")
    whole = match.group(1) or "0"
    fraction = match.group(2) if match.group(1) is not None else match.group(3)
    fraction = fraction or ""
    exponent = EXPONENTS[currency]
    if len(fraction) > exponent:
        places = "no decimals" if exponent == 0 else f"at most {exponent} decimal{'s' if exponent > 1 else ''}"
        raise AmountError(f"{currency} amounts have {places}")
    return int(whole + fraction.ljust(exponent, "0"))
