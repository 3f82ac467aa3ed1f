"""decrypt_card_jwe: what it accepts, and that every refusal looks the same."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from card_jwe_helpers import KID, NOW, OAEP_SHA256, b64url, card_payload, rfc3339
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk

from paygate_server.cards import (
    INVALID_CARD_DATA_MESSAGE,
    CardPayload,
    InvalidCardData,
    decrypt_card_jwe,
    generate_private_key,
    public_jwk,
)
from paygate_server.cards import jwe as jwe_module

BuildJwe = Callable[..., str]


def _jwcrypto_token(
    key: rsa.RSAPrivateKey | None,
    payload: dict[str, Any],
    *,
    alg: str = "RSA-OAEP-256",
    enc: str = "A256GCM",
    kid: str = KID,
    recipient: jc_jwk.JWK | None = None,
    extra_header: dict[str, Any] | None = None,
) -> str:
    """A token made by a third-party JOSE library (jwcrypto)."""
    header = {"alg": alg, "enc": enc, "kid": kid, **(extra_header or {})}
    token = jc_jwe.JWE(
        json.dumps(payload).encode(),
        protected=json.dumps(header),
        algs=[alg, enc],
    )
    if recipient is None:
        assert key is not None
        recipient = jc_jwk.JWK.from_json(json.dumps(public_jwk(kid, key)))
    token.add_recipient(recipient)
    return token.serialize(compact=True)


def _assert_refused(token: object, keys: dict[str, rsa.RSAPrivateKey], now: datetime = NOW) -> None:
    with pytest.raises(InvalidCardData) as caught:
        decrypt_card_jwe(token, keys, now=now)  # type: ignore[arg-type]
    error = caught.value
    assert type(error) is InvalidCardData
    assert str(error) == INVALID_CARD_DATA_MESSAGE
    assert error.args == (INVALID_CARD_DATA_MESSAGE,)
    # Nothing chained: a chained JSONDecodeError would carry the decrypted document.
    assert error.__cause__ is None
    assert error.__context__ is None
    assert "4242" not in repr(error)


def _flip(part: str, index: int = 0) -> str:
    import base64

    raw = bytearray(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    raw[index] ^= 0x01
    return b64url(bytes(raw))


def _replace_part(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


# --- accepted -------------------------------------------------------------------------


def test_jwcrypto_token_decrypts(private_key: rsa.RSAPrivateKey, keys: dict[str, Any]) -> None:
    token = _jwcrypto_token(private_key, card_payload())
    card = decrypt_card_jwe(token, keys, now=NOW)
    assert card.number == "4242424242424242"
    assert card.cvc == "123"
    assert (card.exp_month, card.exp_year) == (12, 2034)
    assert card.name == "Jane Doe"
    assert card.generation_time == NOW - timedelta(minutes=1)
    assert card.brand == "visa"
    assert card.last4 == "4242"
    assert card.summary() == {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}


def test_hand_built_token_decrypts(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    card = decrypt_card_jwe(
        build_jwe(card_payload(number="378282246310005", cvc="1234")), keys, now=NOW
    )
    assert (card.brand, card.last4, card.cvc) == ("amex", "0005", "1234")


def test_string_expiry_typ_and_missing_name_are_accepted(
    build_jwe: BuildJwe, keys: dict[str, Any]
) -> None:
    token = build_jwe(
        card_payload(expMonth="03", expYear="2031", name=...),
        header={"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "typ": "JOSE"},
    )
    card = decrypt_card_jwe(token, keys, now=NOW)
    assert (card.exp_month, card.exp_year, card.name) == (3, 2031, None)


def test_recently_retired_key_still_decrypts(private_key: rsa.RSAPrivateKey) -> None:
    current = generate_private_key(2048)
    token = _jwcrypto_token(private_key, card_payload(), kid="ck_retired")
    card = decrypt_card_jwe(token, {"ck_new": current, "ck_retired": private_key}, now=NOW)
    assert card.last4 == "4242"


@pytest.mark.parametrize(
    "generated",
    [NOW - timedelta(hours=23, minutes=59), NOW + timedelta(minutes=4)],
    ids=["almost-24h-old", "4min-in-the-future"],
)
def test_generation_time_window_edges_accepted(
    build_jwe: BuildJwe, keys: dict[str, Any], generated: datetime
) -> None:
    token = build_jwe(card_payload(generationTime=rfc3339(generated)))
    assert decrypt_card_jwe(token, keys, now=NOW).last4 == "4242"


def test_generation_time_with_offset_and_nanoseconds(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe(card_payload(generationTime="2030-06-15T13:30:00.123456789+02:00"))
    card = decrypt_card_jwe(token, keys, now=NOW)
    assert card.generation_time == datetime(2030, 6, 15, 11, 30, 0, 123456, tzinfo=UTC)


def test_max_age_is_configurable(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe(card_payload(generationTime=rfc3339(NOW - timedelta(minutes=20))))
    assert decrypt_card_jwe(token, keys, now=NOW).last4 == "4242"
    with pytest.raises(InvalidCardData):
        decrypt_card_jwe(token, keys, now=NOW, max_age=timedelta(minutes=15))


# --- refused: all the same -------------------------------------------------------------


def test_tampered_ciphertext(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    _assert_refused(_replace_part(token, 3, _flip(token.split(".")[3])), keys)


def test_tampered_tag(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    _assert_refused(_replace_part(token, 4, _flip(token.split(".")[4], 15)), keys)


def test_tampered_iv(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    _assert_refused(_replace_part(token, 2, _flip(token.split(".")[2], 11)), keys)


def test_tampered_encrypted_key(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    _assert_refused(_replace_part(token, 1, _flip(token.split(".")[1], 100)), keys)


def test_tampered_header_breaks_the_aad(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    # Same members, different encoding: still a valid header, but no longer the AAD.
    other = b64url(b'{"kid":"' + KID.encode() + b'","enc":"A256GCM","alg":"RSA-OAEP-256"}')
    _assert_refused(_replace_part(token, 0, other), keys)


def test_aad_other_than_the_header_is_refused(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(aad=b""), keys)


def test_key_wrapped_for_another_key(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    stranger = generate_private_key(2048).public_key()
    _assert_refused(build_jwe(wrap=lambda cek: stranger.encrypt(cek, OAEP_SHA256)), keys)


def test_key_wrapped_with_sha1_oaep(
    build_jwe: BuildJwe, keys: dict[str, Any], private_key: rsa.RSAPrivateKey
) -> None:
    from cryptography.hazmat.primitives import hashes

    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    _assert_refused(
        build_jwe(wrap=lambda cek: private_key.public_key().encrypt(cek, sha1)), keys
    )


def test_wrong_cek_length(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(cek=os.urandom(16)), keys)


def test_wrong_iv_length(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(iv=os.urandom(16)), keys)


@pytest.mark.parametrize("alg", ["RSA-OAEP", "RSA1_5"])
def test_other_rsa_algorithms(alg: str, private_key: rsa.RSAPrivateKey, keys: dict[str, Any]) -> None:
    _assert_refused(_jwcrypto_token(private_key, card_payload(), alg=alg), keys)


def test_dir_algorithm(keys: dict[str, Any]) -> None:
    secret = jc_jwk.JWK(kty="oct", k=b64url(os.urandom(32)))
    _assert_refused(_jwcrypto_token(None, card_payload(), alg="dir", recipient=secret), keys)


@pytest.mark.parametrize("enc", ["A128GCM", "A256CBC-HS512", "A192GCM"])
def test_other_content_encryptions(
    enc: str, private_key: rsa.RSAPrivateKey, keys: dict[str, Any]
) -> None:
    _assert_refused(_jwcrypto_token(private_key, card_payload(), enc=enc), keys)


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "ck_unknown"},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM"},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": ""},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": 1},
        {"alg": "rsa-oaep-256", "enc": "A256GCM", "kid": KID},
        {"alg": "none", "enc": "A256GCM", "kid": KID},
        {"enc": "A256GCM", "kid": KID},
        {"alg": "RSA-OAEP-256", "kid": KID},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "zip": "DEF"},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "crit": ["exp"], "exp": 1},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "jku": "https://evil.test/k"},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "jwk": {"kty": "RSA"}},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "x5u": "https://evil.test/c"},
        {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": KID, "typ": 1},
    ],
    ids=[
        "unknown-kid", "no-kid", "empty-kid", "int-kid", "alg-case", "alg-none", "no-alg",
        "no-enc", "zip", "crit", "jku", "jwk", "x5u", "typ-not-string",
    ],
)
def test_bad_headers(header: dict[str, Any], build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(header=header), keys)


@pytest.mark.parametrize(
    "header_json",
    [
        b'{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"ck_test_current","alg":"RSA-OAEP-256"}',
        b'["RSA-OAEP-256"]',
        b"not json",
        b'{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"ck_test_current"',
        b"\xff\xfe",
    ],
    ids=["duplicate-member", "array", "not-json", "truncated", "not-utf8"],
)
def test_unparseable_headers(header_json: bytes, build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(header_json=header_json), keys)


@pytest.mark.parametrize(
    "generated",
    [
        rfc3339(NOW - timedelta(hours=24, seconds=1)),
        rfc3339(NOW - timedelta(days=400)),
        rfc3339(NOW + timedelta(minutes=6)),
        "2030-06-15 11:59:00Z",
        "2030-06-15T11:59:00",
        "2030-06-15T11:59:00.000+25:00",
        "2030-02-30T11:59:00Z",
        "yesterday",
        1781524740,
        None,
    ],
    ids=[
        "just-stale", "very-stale", "future", "space-separator", "no-offset", "bad-offset",
        "no-such-day", "prose", "epoch-int", "null",
    ],
)
def test_bad_generation_time(generated: Any, build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(card_payload(generationTime=generated)), keys)


def test_missing_generation_time(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(card_payload(generationTime=...)), keys)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json at all 4242424242424242",
        b'["4242424242424242"]',
        b'{"number":"4242424242424242","number":"4000000000000002"}',
        b'{"number":"4242424242424242","expMonth":NaN}',
        b"",
    ],
    ids=["not-json", "array", "duplicate-member", "nan", "empty"],
)
def test_bad_payload_json(payload: bytes, build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    _assert_refused(build_jwe(payload), keys)


@pytest.mark.parametrize(
    "overrides",
    [
        {"number": "4242424242424241"},
        {"number": "4242 4242 4242 4242"},
        {"number": "42424242424"},
        {"number": "42424242424242424242"},
        {"number": 4242424242424242},
        {"number": "４２４２４２４２４２４２４２４２"},
        {"number": ...},
        {"expMonth": 0},
        {"expMonth": 13},
        {"expMonth": True},
        {"expMonth": "1a"},
        {"expMonth": 1.5},
        {"expYear": 34},
        {"expYear": "34"},
        {"expYear": 20341},
        {"cvc": "12"},
        {"cvc": "12345"},
        {"cvc": 123},
        {"cvc": "12a"},
        {"cvc": ...},
        {"name": 7},
        {"name": "x" * 201},
        {"name": "Jane\nDoe"},
        {"extra": "field"},
    ],
    ids=lambda overrides: "-".join(f"{k}={v!r}"[:30] for k, v in overrides.items()),
)
def test_invalid_card_fields(
    overrides: dict[str, Any], build_jwe: BuildJwe, keys: dict[str, Any]
) -> None:
    _assert_refused(build_jwe(card_payload(**overrides)), keys)


def test_malformed_compact_serializations(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    token = build_jwe()
    parts = token.split(".")
    header, ekey, iv, ciphertext, tag = parts
    # The last character of a 16-byte tag (22 chars) carries 4 unused bits; make them non-zero.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    noncanonical_tag = tag[:-1] + alphabet[alphabet.index(tag[-1]) | 0x01]
    cases: list[object] = [
        "",
        ".",
        "....",
        ".".join(parts[:4]),
        ".".join(parts[:3]),
        token + ".",
        token + ".AAAA",
        ".".join([header, ekey, iv, ciphertext, ""]),
        ".".join([header, ekey, iv, "", tag]),
        ".".join([header, ekey, "", ciphertext, tag]),
        ".".join([header, "", iv, ciphertext, tag]),
        ".".join([header, ekey[:-10], iv, ciphertext, tag]),
        ".".join([header, ekey, iv, ciphertext, tag[:-2]]),
        ".".join([header, ekey, iv, ciphertext, tag + "=="]),
        ".".join([header, ekey, iv, ciphertext + "*", tag]),
        ".".join([header, ekey, iv, ciphertext, noncanonical_tag]),
        ".".join([header + "A", ekey, iv, ciphertext, tag]),
        token.replace("-", "+").replace("_", "/") if ("-" in token or "_" in token) else token + "+",
        token + "\u00e9",
        token * 3,
        None,
        b"bytes",
        12345,
        json.dumps({"protected": header, "ciphertext": ciphertext}),
    ]
    for case in cases:
        _assert_refused(case, keys)


def test_decryption_runs_gcm_even_when_rsa_fails(
    build_jwe: BuildJwe, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No padding oracle: a failed key unwrap still costs an AES-GCM attempt."""
    calls: list[int] = []
    real = jwe_module.AESGCM

    class CountingAESGCM:
        def __init__(self, key: bytes) -> None:
            self._inner = real(key)

        def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
            calls.append(len(data))
            return self._inner.decrypt(nonce, data, associated_data)

    monkeypatch.setattr(jwe_module, "AESGCM", CountingAESGCM)
    stranger = generate_private_key(2048).public_key()
    _assert_refused(build_jwe(wrap=lambda cek: stranger.encrypt(cek, OAEP_SHA256)), keys)
    assert len(calls) == 1
    token = build_jwe()
    _assert_refused(_replace_part(token, 4, _flip(token.split(".")[4])), keys)
    assert len(calls) == 2


def test_naive_now_is_a_programming_error(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        decrypt_card_jwe(build_jwe(), keys, now=datetime(2030, 6, 15))
    assert not isinstance(caught.value, InvalidCardData)


# --- CardPayload ------------------------------------------------------------------------


def test_card_payload_repr_hides_number_cvc_and_name(build_jwe: BuildJwe, keys: dict[str, Any]) -> None:
    card = decrypt_card_jwe(build_jwe(card_payload(cvc="987")), keys, now=NOW)
    for text in (repr(card), str(card), f"{card}", f"{card!r}", repr([card]), repr({"c": card})):
        assert "4242424242424242" not in text
        assert "987" not in text
        assert "Jane" not in text
        assert "visa" in text and "4242" in text


def test_card_payload_is_frozen() -> None:
    card = CardPayload("4242424242424242", 12, 2034, "123", None, NOW)
    with pytest.raises(AttributeError):
        card.number = "5555555555554444"  # type: ignore[misc]
