"""Card numbers (PANs): Luhn check, brand detection, and the plaintext-card detector.

The detector (:func:`contains_card_number`) reads digit groups joined by whatever a person
or a program plausibly puts between them (spaces of any kind, tabs, dashes, dots, slashes,
invisible characters; up to three, of one family), in any script's digits, in keys as
well as values. The only exemptions are positional: a JWE compact string at a path the
endpoint names as its ciphertext field.

This is the one place the server knows what a card number looks like. The checkout's
``static/card.js`` mirrors :func:`card_brand` and :func:`luhn_valid` for the browser (a
browser test checks that the two agree).

Nothing here ever puts a card number into an exception message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterator
from typing import Any, Final

from paygate_server import jsoncodec

__all__ = ["BRANDS", "card_brand", "contains_card_number", "last4",
           "looks_like_jwe_compact", "luhn_valid"]

#: Every value :func:`card_brand` can return.
BRANDS: Final = ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay", "unknown")

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

_MIN_DETECTED_DIGITS: Final = 13
_MAX_DETECTED_DIGITS: Final = 19
# Major Industry Identifier (the first digit) of the card networks: 2 (Mastercard 2-series,
# Mir), 3 (Amex, JCB, Diners), 4 (Visa), 5 (Mastercard, Maestro), 6 (Discover, UnionPay,
# Maestro, RuPay). Numbers starting with 0, 1, 7, 8 or 9 are not card numbers a merchant
# would handle, and excluding them keeps millisecond Unix timestamps (1xxxxxxxxxxxx until
# 2033) and international phone numbers (+1, +7, +8x, +9x) from being refused by the
# detector 10 % of the time (the odds of a random number passing Luhn).
_CARD_FIRST_DIGITS: Final = frozenset("23456")
# Within the 2s, only 22-27 are issued (Mir 2200-2204, Mastercard 2221-2720). Leaving out
# 20 and 21 keeps compact timestamps and dated ids (20241015142231, 2024-10-15-00042) out.
_UNISSUED_TWO_SERIES: Final = frozenset("01")

# What a person or a program puts between the digit groups of a card number, by family.
# "line": whitespace of any kind (tab, no-break and thin spaces, ideographic space),
# invisible characters a copy-paste carries along (zero-width space/joiners, word joiner,
# BOM, soft hyphen) and every dash (hyphen, en/em dash, minus sign, full-width hyphen).
# "dot" and "slash": "4242.4242.4242.4242", "4242/4242/4242/4242" (optionally with spaces).
_LINE_SEPARATORS: Final = (
    r"\s\u00ad\u180e\u200b-\u200d\u2060\ufeff"
    r"\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
)
_DOTS: Final = ".\u00b7\u2024\u2027\u30fb\uff0e\uff65"
_SLASHES: Final = "/\\\u2044\u2215\uff0f\uff3c"
# At most this many separator characters between two groups ("4242 - 4242", two spaces,
# a tab and a space); a longer gap is not one number any more (table columns, paragraphs).
_MAX_SEPARATOR_CHARS: Final = 3
_SEPARATOR = f"[{_LINE_SEPARATORS}{re.escape(_DOTS)}{re.escape(_SLASHES)}]"

# A run of digit groups (``\d``: any script's decimal digits, so full-width digits typed
# with an input method count) joined by short separators. ``(?<!\d)``/``(?!\d)`` make the
# run maximal; groups and separators are split apart afterwards so that a card number glued
# to other digit groups ("order 1042 4242 4242 4242 4242") is still found. Separators and
# digits are disjoint classes, so matching is linear (no backtracking blow-up).
_DIGIT_RUN: Final = re.compile(rf"(?<!\d)\d+(?:{_SEPARATOR}{{1,{_MAX_SEPARATOR_CHARS}}}\d+)*(?!\d)")
_SPLIT_GROUPS: Final = re.compile(r"(\d+)")
# A phone number in international form: the digit group right after a "+" is its country
# code, never the start of a card number ("+49 151 12345678", "+4915112345678").
_PHONE_PLUS: Final = frozenset("+\uff0b")
_DOT_CHARS: Final = frozenset(_DOTS)
_SLASH_CHARS: Final = frozenset(_SLASHES)


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


def _starts_like_card(digits: str, start: int = 0) -> bool:
    first = digits[start]
    if first not in _CARD_FIRST_DIGITS:
        return False
    return first != "2" or start + 1 >= len(digits) or digits[start + 1] not in _UNISSUED_TWO_SERIES


def _candidate_is_card(digits: str) -> bool:
    return (_MIN_DETECTED_DIGITS <= len(digits) <= _MAX_DETECTED_DIGITS and _starts_like_card(digits)
            and luhn_valid(digits))


def _ascii_digits(group: str) -> str:
    # int() reads any script's decimal digit ("４" -> 4): full-width digits are the same card.
    return group if group.isascii() else "".join(str(int(char)) for char in group)


def _separator_family(separator: str) -> str | None:
    """"line", "dot" or "slash" (see the separator classes above); None for a mix of dots
    and slashes, which joins nothing."""
    dot = not _DOT_CHARS.isdisjoint(separator)
    slash = not _SLASH_CHARS.isdisjoint(separator)
    if dot and slash:
        return None
    return "dot" if dot else "slash" if slash else "line"


def _stretches(run: str) -> Iterator[tuple[int, list[str]]]:
    """The stretches of a digit run: consecutive groups joined by separators of one family.

    A card number is written with one kind of separator ("4242.4242.4242.4242"), so
    "24.99 35.99 12.99" (prices) or "25.12.2023 10.30.00" (a date and a time) are not read
    as one number. A group where the family changes ends one stretch and starts the next.
    Yields (index of the stretch's first group in the run, the stretch's ASCII groups).
    """
    parts = _SPLIT_GROUPS.split(run)
    groups = [_ascii_digits(group) for group in parts[1::2]]
    separators = parts[2:-1:2]
    first = 0
    family: str | None = None
    for index, separator in enumerate(separators):
        joined = _separator_family(separator)
        if joined is None or (family is not None and joined != family):
            yield first, groups[first:index + 1]
            first = index if joined is not None else index + 1
        family = joined
    yield first, groups[first:]


_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _groups_contain_card_number(groups: list[str], *, skip_first: bool = False) -> bool:
    """Whether consecutive digit groups spell a card number.

    The card number may be any span of whole groups (the stretch can have other digit groups
    before or after it); ``skip_first`` rules out spans starting at the first group (a
    phone number's country code). Luhn sums come from prefix sums, so a 64 KiB run of
    hostile ``"4 4 4 4 …"`` costs linear time.
    """
    if len(groups) == 1:
        return not skip_first and _candidate_is_card(groups[0])
    digits = "".join(groups)
    size = len(digits)
    if size < _MIN_DETECTED_DIGITS:
        return False
    # luhn[keep][k]: the Luhn sum of the digits at positions p < k for a number whose last
    # digit has parity ``keep``: digits at that parity count as they are, the others doubled.
    luhn = ([0] * (size + 1), [0] * (size + 1))
    for index, char in enumerate(digits):
        value = ord(char) - 48
        for keep in (0, 1):
            luhn[keep][index + 1] = luhn[keep][index] + (value if index & 1 == keep else _DOUBLED[value])
    starts: list[int] = []
    ends: set[int] = set()
    position = 0
    for group in groups:
        starts.append(position)
        position += len(group)
        ends.add(position)
    for start in starts[1:] if skip_first else starts:
        if not _starts_like_card(digits, start):
            continue
        for length in range(_MIN_DETECTED_DIGITS, _MAX_DETECTED_DIGITS + 1):
            end = start + length
            if end > size:
                break
            if end not in ends:
                continue
            # Counting from the right end, the last digit is kept, the one before doubled.
            keep = (end - 1) & 1
            if (luhn[keep][end] - luhn[keep][start]) % 10 == 0:
                return True
    return False


def _string_contains_card_number(text: str) -> bool:
    # A digit is one character (in any script), so a string or a run shorter than the
    # fewest digits detected holds too few to be a card number: most strings of a request
    # (ids, secrets, currencies, keys) are, and their runs are skipped before any splitting.
    if len(text) < _MIN_DETECTED_DIGITS:
        return False
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        if end - start < _MIN_DETECTED_DIGITS:
            continue
        after_plus = start > 0 and text[start - 1] in _PHONE_PLUS
        for first, groups in _stretches(run.group()):
            if _groups_contain_card_number(groups, skip_first=after_plus and first == 0):
                return True
    return False


# JWE compact: five base64url segments. The lengths match what decryption accepts at most.
_JWE_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+){4}")
_MAX_JWE_CHARS: Final = 8192
_MAX_JWE_HEADER_CHARS: Final = 1024


def looks_like_jwe_compact(value: object) -> bool:
    """Whether ``value`` has the shape of a JWE in compact serialization (RFC 7516 §7.1).

    Five non-empty base64url segments, the first a JSON object header naming ``alg`` and
    ``enc``. Only the shape: whether it decrypts is :mod:`.jwe`'s business. Used to let the
    real ciphertext positions through the plaintext detector, and nothing else.
    """
    if not isinstance(value, str) or len(value) > _MAX_JWE_CHARS or not _JWE_COMPACT.fullmatch(value):
        return False
    segments = value.split(".")
    if any(len(segment) % 4 == 1 for segment in segments) or len(segments[0]) > _MAX_JWE_HEADER_CHARS:
        return False  # a base64url length that no byte string encodes to
    try:
        header = jsoncodec.loads(base64.urlsafe_b64decode(segments[0] + "=" * (-len(segments[0]) % 4)))
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str) and isinstance(header.get("enc"), str)


# A node of the ciphertext-path trie: a key's child node, or _CIPHERTEXT at a path's end.
_CIPHERTEXT: Final = object()
_Trie = dict[str, Any]


@functools.lru_cache(maxsize=64)
def _trie(paths: tuple[tuple[str, ...], ...]) -> _Trie | None:
    # Cached: the paths are an endpoint's constant, and this runs on every request.
    root: _Trie = {}
    for path in paths:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _CIPHERTEXT
    return root or None


def _walk(value: object, ciphertext: _Trie | None) -> Iterator[object]:
    """Every scalar and key of a decoded JSON document, iteratively (no recursion limit),
    except a JWE compact string at one of the ciphertext positions."""
    stack: list[tuple[object, _Trie | None]] = [(value, ciphertext)]
    while stack:
        item, node = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                yield key
                below = node.get(key) if node is not None else None
                if below is _CIPHERTEXT:
                    if looks_like_jwe_compact(child):
                        continue
                    below = None
                stack.append((child, below))
        elif isinstance(item, (list, tuple)):
            # Positions are paths of object keys from the root: nothing in a list is exempt.
            stack.extend((child, None) for child in item)
        else:
            yield item


def contains_card_number(value: object, *, ciphertext_at: tuple[tuple[str, ...], ...] = ()) -> bool:
    """Whether a decoded JSON document holds something that looks like a card number.

    Walks dicts, lists, strings and numbers, dict keys included, and searches inside
    strings (``"card 4242 4242 4242 4242 please"`` counts). ``ciphertext_at`` names the
    positions of one endpoint's body that carry a card JWE, as key paths from the root
    (``(("paymentDetails", "encryptedCard"),)``): a JWE compact string there is skipped,
    since its base64url is not text; anything else there (an object, a bare number) is
    searched like the rest. A key name alone exempts nothing. Integers and integral
    floats are checked as their decimal digits; booleans and ``None`` never match.
    """
    for item in _walk(value, _trie(ciphertext_at)):
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
