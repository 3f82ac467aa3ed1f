"""The plaintext-card detector (SPEC §4, issue #15 items 1 and 2): positional ciphertext
exemptions, separators of every plausible kind (property tests), and false positives kept out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from card_jwe_helpers import b64url
from hypothesis import given, settings
from hypothesis import strategies as st

from paygate_server.cards import contains_card_number, looks_like_jwe_compact, luhn_valid

PROCESS = (("paymentDetails", "encryptedCard"),)
TOKENS = (("encryptedCard",),)
HEADER = b64url(json.dumps({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "k1"}).encode())
# JWE-shaped, with a segment that the detector would read as a card number if it looked:
# proves that the exemption really skips the string (and only where it applies).
DIGITY_JWE = f"{HEADER}.AAAA.4242424242424242.BBBB.CCCC"


def test_the_fixture_jwe_would_be_flagged_if_read() -> None:
    assert looks_like_jwe_compact(DIGITY_JWE)
    assert contains_card_number({"x": DIGITY_JWE})


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        ({"paymentIntentId": "pi_x", "paymentDetails": {"encryptedCard": DIGITY_JWE}}, PROCESS),
        ({"clientSecret": "pi_x_secret_y", "encryptedCard": DIGITY_JWE}, TOKENS),
    ],
)
def test_a_jwe_at_the_endpoints_ciphertext_position_is_not_read(document: dict[str, Any], paths: Any) -> None:
    assert not contains_card_number(document, ciphertext_at=paths)


def test_a_real_jwe_is_exempt(build_jwe: Any) -> None:
    jwe = build_jwe()
    assert looks_like_jwe_compact(jwe)
    assert not contains_card_number({"paymentDetails": {"encryptedCard": jwe}}, ciphertext_at=PROCESS)


@pytest.mark.parametrize(
    ("document", "paths"),
    [
        # The key name alone exempts nothing, at any depth.
        ({"paymentDetails": {"encryptedCard": DIGITY_JWE}}, ()),
        ({"metadata": {"encryptedCard": DIGITY_JWE}}, PROCESS),
        ({"productDetails": {"paymentDetails": {"encryptedCard": DIGITY_JWE}}}, PROCESS),
        ({"encryptedCard": DIGITY_JWE}, PROCESS),  # the tokens position, on process
        ({"paymentDetails": {"encryptedCard": DIGITY_JWE}}, TOKENS),  # and the other way round
        # At the position, only a JWE compact string: not an object, list, number or free text.
        ({"paymentDetails": {"encryptedCard": {"number": "5105105105105100", "cvc": "931"}}}, PROCESS),
        ({"encryptedCard": {"jwe": DIGITY_JWE}}, TOKENS),
        ({"encryptedCard": [DIGITY_JWE]}, TOKENS),
        ({"encryptedCard": "5105 1051 0510 5100"}, TOKENS),
        ({"encryptedCard": 5105105105105100}, TOKENS),
        ({"encryptedCard": f"{DIGITY_JWE}.DDDD"}, TOKENS),  # six segments
        ({"paymentDetails": [{"encryptedCard": DIGITY_JWE}]}, PROCESS),  # positions are key paths
        # Everything around the position is still read.
        ({"paymentDetails": {"encryptedCard": DIGITY_JWE, "pan": "4242424242424242"}}, PROCESS),
        ({"encryptedCard": DIGITY_JWE, "clientSecret": "4242 4242 4242 4242"}, TOKENS),
    ],
)
def test_anything_else_is_read(document: dict[str, Any], paths: Any) -> None:
    assert contains_card_number(document, ciphertext_at=paths)


@pytest.mark.parametrize(
    "value",
    [
        "4242424242424242",
        "4242.4242.4242.4242.4242",  # five segments, but the first is no JSON header
        f"{b64url(b'[1]')}.AAAA.AAAA.AAAA.AAAA",  # a header that is not an object
        f"{b64url(json.dumps({'alg': 'x'}).encode())}.AAAA.AAAA.AAAA.AAAA",  # no enc
        f"{HEADER}..AAAA.AAAA.AAAA",  # an empty segment
        f"{HEADER}.AAAAA.AAAA.AAAA.AAAA",  # a base64url length no bytes encode to
        f"{HEADER}.AA AA.AAAA.AAAA.AAAA",
        f"{HEADER}.{'A' * 8192}.AAAA.AAAA.AAAA",  # longer than any JWE the gateway accepts
        {"jwe": DIGITY_JWE},
        None,
    ],
)
def test_not_a_jwe_compact_string(value: Any) -> None:
    assert not looks_like_jwe_compact(value)


def _with_check_digit(body: str) -> str:
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def test_a_price_list_is_not_one_number() -> None:
    # Prices whose digits, run together, pass Luhn: the dots and spaces (two separator
    # families) keep them apart.
    last = _with_check_digit("249935991299450")
    prices = f"24.99 35.99 12.99 45.0{last[-1]}"
    assert contains_card_number(last) and contains_card_number(last.replace("", " ").strip())
    assert not contains_card_number({"description": prices})


# --- property tests: separators ----------------------------------------------------------

_PREFIXES = ["4", "51", "55", "2221", "2720", "34", "37", "6011", "65", "36", "3528", "62"]
_LINE = [" ", "\t", "\n", "\u00a0", "\u202f", "\u2009", "\u3000", "\u200b", "\u2060", "\ufeff",
         "\u00ad", "-", "\u2010", "\u2013", "\u2014", "\u2212", "\uff0d"]
_FAMILY_CHARS = {"line": _LINE, "dot": [".", "\u00b7", "\uff0e"], "slash": ["/", "\\", "\uff0f"]}
_FULL_WIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(_PREFIXES))
    length = draw(st.integers(13, 19))
    body = prefix + "".join(draw(st.lists(st.sampled_from("0123456789"),
                                          min_size=length - 1 - len(prefix),
                                          max_size=length - 1 - len(prefix))))
    return _with_check_digit(body)


@st.composite
def written_card_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """(the card number, as a person or a program might write it: grouped, separated)."""
    number = draw(card_numbers())
    cuts = sorted(draw(st.sets(st.integers(1, len(number) - 1), max_size=6)))
    groups = [number[a:b] for a, b in zip([0, *cuts], [*cuts, len(number)], strict=True)]
    family = draw(st.sampled_from(sorted(_FAMILY_CHARS)))
    text = groups[0]
    for group in groups[1:]:
        core = draw(st.sampled_from(_FAMILY_CHARS[family]))
        if family != "line" and draw(st.booleans()):
            core = f" {core} "  # "4242 / 4242"
        elif family == "line":
            core += "".join(draw(st.lists(st.sampled_from(_LINE), max_size=2)))
        text += core + group
    if draw(st.booleans()):
        text = text.translate(_FULL_WIDTH)
    return number, text


# Around the number: words and punctuation, never a digit, a separator or a "+".
_surroundings = st.text(alphabet="abcXYZ:;,()#=", max_size=12)


@settings(max_examples=300, deadline=None)
@given(written=written_card_numbers(), before=_surroundings, after=_surroundings,
       as_key=st.booleans())
def test_a_card_number_is_found_whatever_separates_its_groups(
        written: tuple[str, str], before: str, after: str, as_key: bool) -> None:
    _, text = written
    text = f"{before} {text} {after}" if before or after else text
    document = {"metadata": {text: "x"}} if as_key else {"metadata": {"note": text}}
    assert contains_card_number(document)


# --- property tests: what is not a card number ------------------------------------------

_COUNTRY_CODES = ["1", "7", "20", "27", "31", "33", "34", "39", "41", "44", "46", "49", "52", "55",
                  "61", "62", "65", "81", "82", "86", "90", "91", "351", "353", "358", "380", "420",
                  "852", "886", "971", "972"]


@st.composite
def phone_numbers(draw: st.DrawFn) -> str:
    code = draw(st.sampled_from(_COUNTRY_CODES))
    # National significant numbers: 10 digits for +1 and +7, at most 12 elsewhere (E.164).
    size = 10 if code in ("1", "7") else draw(st.integers(6, 12))
    national = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=size, max_size=size)))
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=3)))
    groups = [national[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    separator = draw(st.sampled_from([" ", "-", ".", "\u00a0", ""]))
    style = draw(st.sampled_from(["+", "00", "+ (0)"]))
    if style == "+":
        return f"+{code}{draw(st.sampled_from([' ', separator]))}{separator.join(groups)}"
    if style == "00":
        return f"00{code} {separator.join(groups)}"
    return f"+{code} (0){separator.join(groups)}"


_TIMESTAMP_FORMATS = ["%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S", "%Y%m%dT%H%M%S",
                      "%d.%m.%Y %H:%M", "%d.%m.%Y %H.%M.%S", "%Y/%m/%d %H:%M:%S", "%m/%d/%Y %I:%M %p",
                      "%Y.%m.%d %H:%M:%S.%f", "%Y-%m-%d %H-%M-%S", "%d/%m/%Y %H.%M"]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    moment = draw(st.datetimes(min_value=datetime(2001, 9, 10), max_value=datetime(2033, 5, 17),
                               timezones=st.just(UTC)))
    kind = draw(st.sampled_from(["format", "epoch-s", "epoch-ms", "epoch-us"]))
    if kind == "format":
        return moment.strftime(draw(st.sampled_from(_TIMESTAMP_FORMATS)))
    scale = {"epoch-s": 1, "epoch-ms": 1000, "epoch-us": 1_000_000}[kind]
    return str(int(moment.timestamp() * scale))


@st.composite
def order_ids(draw: st.DrawFn) -> str:
    day = datetime(2000, 1, 1) + timedelta(days=draw(st.integers(0, 365 * 199)))
    sequence = draw(st.integers(0, 99_999_999))
    return draw(st.sampled_from([
        f"ORD-{day:%Y}-{sequence:06d}", f"A-{day:%Y-%m-%d}-{sequence % 100000:05d}",
        f"{day:%Y%m%d}{sequence % 1000000:06d}", f"INV {day:%Y} {sequence:08d}", f"#{sequence}",
    ]))


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(phone_numbers(), timestamps(), order_ids()), as_key=st.booleans())
def test_phone_numbers_timestamps_and_order_ids_are_not_card_numbers(value: str, as_key: bool) -> None:
    document = {"metadata": {value: "x"}} if as_key else {"metadata": {"ref": value, "note": f"at {value}."}}
    assert not contains_card_number(document)


def test_strings_and_runs_too_short_for_a_card_number_are_not_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common case of every request (ids, secrets, short values): nothing shorter than
    the fewest digits detected (13) reaches the run's splitting, which is all the
    detector's per-run cost; a long enough run still does, wherever it is in the string."""
    from paygate_server.cards import pan

    split: list[str] = []
    original = pan._stretches
    monkeypatch.setattr(pan, "_stretches", lambda run: split.append(run) or original(run))
    short = {"paymentIntentId": "pi_2k7q3m4n5p6r7s2t3v4w5x6y7z", "currency": "EUR", "amount": 1999,
             "clientSecret": "pi_2k7q_secret_3m4n5p6r7s2t3v4w5x6y7z", "note": "order 1042-2024 at 10.30"}
    assert not contains_card_number(short)
    assert split == []
    # A run of 12 characters in a long string: one short of the fewest digits a card has.
    assert not contains_card_number({"x": "card: 424242424242 please"})
    assert split == []
    assert contains_card_number({"note": "ids 2k7 4n5 then 4242 4242 4242 4242 ok"})
    assert split == ["4242 4242 4242 4242"]
    # Full-width digits are one character each, as ASCII ones: the length rule holds for them.
    assert contains_card_number({"x": "４２４２４２４２４２４２４２４２"})
