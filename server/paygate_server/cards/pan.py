"""Card numbers (PANs): Luhn check, brand detection, and the plaintext-card detector.

This is the one place the server knows what a card number looks like. The checkout's
``static/card.js`` mirrors :func:`card_brand` and :func:`luhn_valid` for the browser (a
browser test checks that the two agree).

Nothing here ever puts a card number into an exception message or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = [
    "BRANDS",
    "DETECTOR_SKIPPED_KEYS",
    "card_brand",
    "contains_card_number",
    "last4",
    "looks_like_card_number",
    "luhn_valid",
]

#: Every value :func:`card_brand` can return.
BRANDS: Final = ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay", "unknown")

#: JSON keys whose values the plaintext detector does not look into: they hold ciphertext.
DETECTOR_SKIPPED_KEYS: Final = frozenset({"encryptedCard"})

# (brand, inclusive low, inclusive high) over a prefix of ``len(str(low))`` digits. Checked in
# order: the only overlap is Discover's 622126-622925 inside UnionPay's 62, so it comes first.
_BIN_RANGES: Final[tuple[tuple[str, int, int], ...]] = (
    ("amex", 34, 34),
    ("amex", 37, 37),
    ("diners", 300, 305),
    ("diners", 3095, 3095),
    ("diners", 36, 36),
    ("diners", 38, 39),
    ("jcb", 3528, 3589),
    ("visa", 4, 4),
    ("mastercard", 51, 55),
    ("mastercard", 2221, 2720),
    ("discover", 6011, 6011),
    # Discover-acquired co-branded China UnionPay range: routed as Discover outside China.
    ("discover", 622126, 622925),
    ("discover", 644, 649),
    ("discover", 65, 65),
    ("unionpay", 62, 62),
    ("unionpay", 81, 81),
)

_DIGITS = re.compile(r"[0-9]+")

# A run of digits where neighbouring digits may be separated by ONE space or ONE dash.
# ``(?<![0-9])``/``(?![0-9])`` make the run maximal; the separators are split off afterwards
# so that a card number glued to other digit groups ("order 1042 4242 4242 4242 4242") is
# still found.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_WHOLE_CANDIDATE = re.compile(r"[0-9]+(?:[ -][0-9]+)*")

_MIN_DETECTED_DIGITS: Final = 13
_MAX_DETECTED_DIGITS: Final = 19
# Major Industry Identifier (the first digit) of the card networks: 2 (Mastercard 2-series,
# Mir), 3 (Amex, JCB, Diners), 4 (Visa), 5 (Mastercard, Maestro), 6 (Discover, UnionPay,
# Maestro, RuPay). Numbers starting with 0, 1, 7, 8 or 9 are not card numbers a merchant
# would handle, and excluding them keeps millisecond Unix timestamps (1xxxxxxxxxxxx until
# 2033) and international phone numbers (+1, +7, +8x, +9x) from being refused by the
# detector 10 % of the time (the odds of a random number passing Luhn).
_CARD_FIRST_DIGITS: Final = frozenset("23456")


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits only, at least 2) passes the Luhn (mod 10) check."""
    if len(digits) < 2 or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(number: str) -> str:
    """The card network of a card number (digits only) by its leading digits (BIN/IIN).

    Returns one of :data:`BRANDS`; ``"unknown"`` when no range matches. The length is not
    checked here.
    """
    if not number.isascii() or not number.isdigit():
        return "unknown"
    for brand, low, high in _BIN_RANGES:
        width = len(str(low))
        if len(number) >= width and low <= int(number[:width]) <= high:
            return brand
    return "unknown"


def last4(number: str) -> str:
    """The last four digits, the most of a card number that may be shown besides the BIN."""
    return number[-4:]


def _candidate_is_card(digits: str) -> bool:
    return (
        _MIN_DETECTED_DIGITS <= len(digits) <= _MAX_DETECTED_DIGITS
        and digits[0] in _CARD_FIRST_DIGITS
        and luhn_valid(digits)
    )


def looks_like_card_number(value: str) -> bool:
    """Whether the whole string reads as a card number (SPEC §4 plaintext detector).

    13–19 digits, Luhn-valid, starting like a card network's number (first digit 2–6),
    with at most a single space or a single dash between two digits
    (``"4242-4242-4242-4242"``, ``"4242 4242 4242 4242"``). Leading/trailing whitespace is
    ignored.
    """
    candidate = value.strip()
    if not _WHOLE_CANDIDATE.fullmatch(candidate):
        return False
    return _candidate_is_card("".join(_DIGITS.findall(candidate)))


_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _run_contains_card_number(groups: list[str]) -> bool:
    """Whether consecutive digit groups of one run spell a card number.

    The card number may be any span of whole groups (the run can have other digit groups
    before or after it). Luhn sums come from prefix sums, so a 64 KiB run of hostile
    ``"4 4 4 4 …"`` costs linear time.
    """
    if len(groups) == 1:
        return _candidate_is_card(groups[0])
    digits = "".join(groups)
    size = len(digits)
    if size < _MIN_DETECTED_DIGITS:
        return False
    # plain[parity][k] / doubled[parity][k]: sum over positions p < k with p % 2 == parity
    # of the digit's value, as is / as Luhn doubles it.
    plain = ([0] * (size + 1), [0] * (size + 1))
    doubled = ([0] * (size + 1), [0] * (size + 1))
    for index, char in enumerate(digits):
        value = ord(char) - 48
        parity = index & 1
        for which in (0, 1):
            plain[which][index + 1] = plain[which][index] + (value if which == parity else 0)
            doubled[which][index + 1] = doubled[which][index] + (
                _DOUBLED[value] if which == parity else 0
            )
    starts: list[int] = []
    ends: set[int] = set()
    position = 0
    for group in groups:
        starts.append(position)
        position += len(group)
        ends.add(position)
    for start in starts:
        if digits[start] not in _CARD_FIRST_DIGITS:
            continue
        for length in range(_MIN_DETECTED_DIGITS, _MAX_DETECTED_DIGITS + 1):
            end = start + length
            if end > size:
                break
            if end not in ends:
                continue
            # Counting from the right end, the last digit is kept, the one before doubled:
            # positions with the parity of (end - 1) are kept, the others doubled.
            keep = (end - 1) & 1
            total = (plain[keep][end] - plain[keep][start]) + (
                doubled[1 - keep][end] - doubled[1 - keep][start]
            )
            if total % 10 == 0:
                return True
    return False


def _string_contains_card_number(text: str) -> bool:
    return any(
        _run_contains_card_number(_DIGITS.findall(run.group())) for run in _DIGIT_RUN.finditer(text)
    )


def _walk(value: object) -> Iterator[object]:
    """Every scalar and key of a decoded JSON document, iteratively (no recursion limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key in DETECTOR_SKIPPED_KEYS:
                    continue
                yield key
                stack.append(child)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            yield item


def contains_card_number(value: object) -> bool:
    """Whether a decoded JSON document holds something that looks like a card number.

    Walks dicts, lists, strings and numbers, including dict keys, and searches inside
    strings (``"card 4242 4242 4242 4242 please"`` counts). Values under a key named in
    :data:`DETECTOR_SKIPPED_KEYS` (``encryptedCard``) are skipped: they are ciphertext.
    Integers and integral floats are checked as their decimal digits; booleans and
    ``None`` never match.
    """
    for item in _walk(value):
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int):
            if _candidate_is_card(str(abs(item))):
                return True
        elif isinstance(item, float):
            if item.is_integer() and abs(item) < 1e20 and _candidate_is_card(str(abs(int(item)))):
                return True
        elif isinstance(item, str):
            if _string_contains_card_number(item):
                return True
    return False
