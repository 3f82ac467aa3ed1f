"""ISO 4217 currencies in circulation and their minor-unit exponents.

Amounts are integers in the minor unit (SPEC §2); the exponent says how to display them
(JPY 0: 1999 is ¥1999; USD 2: 1999 is $19.99; KWD 3).
"""
from __future__ import annotations

__all__ = ["EXPONENTS", "currency_problem", "is_currency"]

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
