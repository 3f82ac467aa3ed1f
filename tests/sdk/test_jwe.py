"""Card encryption (SPEC §5): JWE compact, RSA-OAEP-256 + A256GCM, decrypted by a third
party (jwcrypto) with the private key."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwe, jwk

import paygate
from paygate._jwe import public_key_from_jwk, select_jwk

from .conftest import reply, resolve

PAN = "4242424242424242"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "enc",
        "alg": "RSA-OAEP-256",
        "n": b64url(n),
        "e": b64url(e),
    }


def decrypt_with_jwcrypto(token: str, key: rsa.RSAPrivateKey) -> tuple[dict[str, Any], bytes]:
    jwe_token = jwe.JWE()
    jwe_token.deserialize(token, key=jwk.JWK.from_pyca(key))
    return json.loads(jwe_token.objects["protected"]), jwe_token.payload


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks(rsa_private_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {
        "keys": [public_jwk(rsa_private_key, "key-2024"), public_jwk(other_rsa_key, "key-2023")]
    }


def test_encrypt_card_decrypts_with_jwcrypto(
    rsa_private_key: rsa.RSAPrivateKey, jwks: dict[str, Any]
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    token = paygate.encrypt_card(
        jwks, number="4242 4242 4242 4242", exp_month=12, exp_year=2030, cvc="123", name="Jane Doe"
    )
    header, payload = decrypt_with_jwcrypto(token, rsa_private_key)
    assert header == {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "key-2024"}
    card = json.loads(payload)
    generated = datetime.strptime(card.pop("generationTime"), "%Y-%m-%dT%H:%M:%SZ")
    assert before <= generated.replace(tzinfo=UTC) <= before + timedelta(seconds=5)
    assert card == {
        "number": PAN,
        "expMonth": 12,
        "expYear": 2030,
        "cvc": "123",
        "name": "Jane Doe",
    }


def test_compact_layout(rsa_private_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    token = paygate.encrypt_card(jwks, number=PAN, exp_month="01", exp_year="31", cvc=1234)
    parts = token.split(".")
    assert len(parts) == 5
    protected, encrypted_key, iv, ciphertext, tag = parts
    assert all("=" not in p and "+" not in p and "/" not in p for p in parts)
    assert len(b64url_decode(encrypted_key)) == 256  # RSA-2048
    assert len(b64url_decode(iv)) == 12
    assert len(b64url_decode(tag)) == 16
    # Decrypt by hand too: AAD is the ASCII of the encoded protected header.
    cek = rsa_private_key.decrypt(
        b64url_decode(encrypted_key),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    assert len(cek) == 32
    plaintext = AESGCM(cek).decrypt(
        b64url_decode(iv), b64url_decode(ciphertext) + b64url_decode(tag), protected.encode("ascii")
    )
    card = json.loads(plaintext)
    assert (card["expMonth"], card["expYear"], card["cvc"]) == (1, 2031, "1234")
    assert "name" not in card


def test_every_encryption_is_fresh(jwks: dict[str, Any]) -> None:
    a = paygate.encrypt_card(jwks, number=PAN, exp_month=1, exp_year=2030, cvc="123")
    b = paygate.encrypt_card(jwks, number=PAN, exp_month=1, exp_year=2030, cvc="123")
    assert a.split(".")[0] == b.split(".")[0]
    assert all(x != y for x, y in zip(a.split(".")[1:], b.split(".")[1:], strict=True))


def test_kid_selects_a_key(rsa_private_key: rsa.RSAPrivateKey, jwks: dict[str, Any]) -> None:
    token = paygate.encrypt_card(
        jwks, number=PAN, exp_month=1, exp_year=2030, cvc="123", kid="key-2023"
    )
    assert json.loads(b64url_decode(token.split(".")[0]))["kid"] == "key-2023"
    with pytest.raises(jwe.InvalidJWEData):
        decrypt_with_jwcrypto(token, rsa_private_key)  # not our key
    with pytest.raises(ValueError):
        paygate.encrypt_card(jwks, number=PAN, exp_month=1, exp_year=2030, cvc="123", kid="nope")


def test_single_jwk_and_bare_public_key(rsa_private_key: rsa.RSAPrivateKey) -> None:
    single = public_jwk(rsa_private_key, "only")
    token = paygate.encrypt_card(single, number=PAN, exp_month=1, exp_year=2030, cvc="123")
    assert decrypt_with_jwcrypto(token, rsa_private_key)[0]["kid"] == "only"
    public = rsa_private_key.public_key()
    token = paygate.encrypt_card(
        public, number=PAN, exp_month=1, exp_year=2030, cvc="123", kid="k1"
    )
    assert decrypt_with_jwcrypto(token, rsa_private_key)[0]["kid"] == "k1"
    with pytest.raises(ValueError, match="kid"):
        paygate.encrypt_card(public, number=PAN, exp_month=1, exp_year=2030, cvc="123")


def test_jwe_encrypt_for_any_payload(rsa_private_key: rsa.RSAPrivateKey) -> None:
    token = paygate.jwe_encrypt(rsa_private_key.public_key(), "kid-x", b"\x00binary\xff")
    header, payload = decrypt_with_jwcrypto(token, rsa_private_key)
    assert header["kid"] == "kid-x" and payload == b"\x00binary\xff"
    no_kid = paygate.jwe_encrypt(rsa_private_key.public_key(), None, b"x")
    assert decrypt_with_jwcrypto(no_kid, rsa_private_key)[0] == {
        "alg": "RSA-OAEP-256",
        "enc": "A256GCM",
    }


def test_key_selection_skips_unusable_keys(rsa_private_key: rsa.RSAPrivateKey) -> None:
    good = public_jwk(rsa_private_key, "good")
    jwks = {
        "keys": [
            {"kty": "EC", "kid": "ec"},
            {**good, "kid": "sig", "use": "sig"},
            {**good, "kid": "old-alg", "alg": "RSA1_5"},
            good,
        ]
    }
    assert select_jwk(jwks)["kid"] == "good"
    with pytest.raises(ValueError):
        select_jwk({"keys": []})
    with pytest.raises(ValueError):
        select_jwk({"nokeys": 1})


def test_small_rsa_keys_are_refused() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="2048"):
        public_key_from_jwk(public_jwk(small, "small"))
    with pytest.raises(ValueError, match="2048"):
        paygate.jwe_encrypt(small.public_key(), "small", b"x")


@pytest.mark.parametrize(
    "field, value",
    [
        ("number", "4242424242424241"),  # fails Luhn
        ("number", "42424242"),
        ("number", "4242424242424242424242"),
        ("number", "4242x42424242424"),
        ("exp_month", 13),
        ("exp_month", 0),
        ("exp_year", 203),
        ("cvc", "12"),
        ("cvc", "12a"),
        # A minus sign is not a separator: these were taken as 2030, 12, 123 and the PAN.
        ("exp_year", -30),
        ("exp_year", "-2030"),
        ("exp_month", -12),
        ("cvc", "1-2-3"),
        ("cvc", "12 3"),
        ("number", -4242424242424242),
    ],
)
def test_bad_card_details_never_echo_the_card(jwks: dict[str, Any], field: str, value: Any) -> None:
    card: dict[str, Any] = {"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": "987"}
    card[field] = value
    with pytest.raises(ValueError) as info:
        paygate.encrypt_card(jwks, **card)
    message = str(info.value)
    for secret in (PAN, "4242424242424241", "987", str(value)):
        if len(secret) >= 3 and secret.isdigit():
            assert secret not in message


async def test_client_fetches_and_caches_the_jwks(
    make_client: Any,
    fake_time: Any,
    rsa_private_key: rsa.RSAPrivateKey,
    jwks: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="paygate")
    client, gateway = make_client(reply(200, jwks))
    token = await resolve(
        client.encrypt_card(number=PAN, exp_month=12, exp_year=2030, cvc="123", name="Jane")
    )
    assert json.loads(decrypt_with_jwcrypto(token, rsa_private_key)[1])["number"] == PAN
    await resolve(client.encrypt_card(number=PAN, exp_month=12, exp_year=2030, cvc="123"))
    assert len(gateway.requests) == 1  # cached
    request = gateway.requests[0]
    assert (request.method, request.url.path) == ("GET", "/checkout/v1/keys")
    # Public keys: not an /api/v1 call, so nothing signed and no credentials sent.
    assert "authorization" not in request.headers and "x-signature" not in request.headers
    fake_time.now += 299
    await resolve(client.card_keys())
    assert len(gateway.requests) == 1  # still fresh (the gateway says max-age=300)
    fake_time.now += 2
    await resolve(client.card_keys())
    assert len(gateway.requests) == 2  # the cache expired
    await resolve(client.card_keys(refresh=True))
    assert len(gateway.requests) == 3
    # No card data in any log line.
    for record in caplog.records:
        text = record.getMessage()
        assert PAN not in text and "Jane" not in text


async def test_client_rejects_a_bad_jwks(make_client: Any) -> None:
    client, _ = make_client(reply(200, {"nokeys": []}))
    with pytest.raises(paygate.APIError):
        await resolve(client.card_keys())


@pytest.mark.parametrize(
    "keys",
    [
        [],  # no key at all
        [{"kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"}],  # none RSA
        [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}],  # a toy modulus
        [{"kty": "RSA", "kid": "k1", "n": "!!!", "e": "AQAB"}],  # not base64url
        "rsa_without_kid",
        # Keys that parse but OpenSSL will not encrypt with: a modulus past its 16,384 bits,
        # an exponent past 64 bits with a modulus over 3,072 (was ValueError "Encryption
        # failed" out of encrypt_card, as if the card were wrong, and the JWKS cached).
        [{"kty": "RSA", "kid": "k1", "n": b64url(((1 << 20000) | 0x21).to_bytes(2501, "big")),
          "e": "AQAB"}],
        [{"kty": "RSA", "kid": "k1", "n": b64url(((1 << 4095) | 0x21).to_bytes(512, "big")),
          "e": b64url(((1 << 100) | 1).to_bytes(13, "big"))}],
    ],
)
async def test_client_refuses_a_jwks_it_cannot_encrypt_with(
    make_client: Any, rsa_private_key: rsa.RSAPrivateKey, keys: Any
) -> None:
    # The gateway's answer is at fault, not the merchant's card: APIError (was ValueError,
    # and the unusable JWKS stayed cached for five minutes).
    if keys == "rsa_without_kid":
        jwk = public_jwk(rsa_private_key, "k1")
        del jwk["kid"]
        keys = [jwk]
    client, gateway = make_client(
        reply(200, {"keys": keys}), reply(200, {"keys": [public_jwk(rsa_private_key, "k2")]})
    )
    with pytest.raises(paygate.APIError, match="JWKS") as info:
        await resolve(client.encrypt_card(number=PAN, exp_month=12, exp_year=2030, cvc="123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_header"
    assert PAN not in str(info.value)
    # Nothing was cached: the next call fetches the keys again, and works.
    token = await resolve(client.encrypt_card(number=PAN, exp_month=12, exp_year=2030, cvc="123"))
    assert token.count(".") == 4 and len(gateway.requests) == 2
