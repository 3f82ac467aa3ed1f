"""Checkout key generation, JWKS rendering, PKCS#8 round trip and PAN fingerprints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk as jc_jwk

from paygate_server.cards import (
    DEFAULT_KEY_BITS,
    fingerprint,
    generate_private_key,
    new_kid,
    private_key_from_pkcs8_der,
    private_key_to_pkcs8_der,
    public_jwk,
    render_jwks,
)
from paygate_server.cards.keystore import CardKeyStore, rotate_card_key
from paygate_server.config import Settings
from paygate_server.vault.datakeys import rotate_data_key
from tests.support.app import running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.eventually import eventually


def _b64url_int(value: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _documented_default_bits() -> int:
    """The default of ``PAYGATE_CARD_KEY_BITS`` in the operator's configuration table."""
    table = (Path(__file__).parents[3] / "docs" / "operations.md").read_text()
    found = re.search(r"^\| `PAYGATE_CARD_KEY_BITS` \| `(\d+)` \|", table, re.MULTILINE)
    assert found, "docs/operations.md lists no default for PAYGATE_CARD_KEY_BITS"
    return int(found.group(1))


async def test_every_checkout_key_default_is_the_documented_size(fresh_database_url: str, tmp_path: Path) -> None:
    """One default for the RSA size (``DEFAULT_KEY_BITS``), the documented one, wherever a
    key can be made: the settings, the key store and rotation, the bare generator — and
    the key a fresh gateway actually generates and publishes."""
    documented = _documented_default_bits()
    assert DEFAULT_KEY_BITS == documented
    assert Settings().card_key_bits == documented
    for made_by in (rotate_card_key, CardKeyStore.__init__):
        assert inspect.signature(made_by).parameters["bits"].default == documented, made_by
    assert generate_private_key().key_size == documented
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        jwks = (await g.http.get("/checkout/v1/keys")).json()
    assert [_b64url_int(k["n"]).bit_length() for k in jwks["keys"]] == [documented]


@pytest.mark.parametrize("bits", [1024, 2047, 0])
def test_small_keys_are_refused(bits: int) -> None:
    with pytest.raises(ValueError):
        generate_private_key(bits)


def test_jwks_shape(private_key: rsa.RSAPrivateKey) -> None:
    other = generate_private_key(2048)
    jwks = render_jwks({"ck_current": private_key, "ck_next": other.public_key()})
    assert [key["kid"] for key in jwks["keys"]] == ["ck_current", "ck_next"]
    first = jwks["keys"][0]
    assert set(first) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (first["kty"], first["use"], first["alg"], first["e"]) == ("RSA", "enc", "RSA-OAEP-256", "AQAB")
    numbers = private_key.public_key().public_numbers()
    assert _b64url_int(first["n"]) == numbers.n
    assert "=" not in first["n"] and "+" not in first["n"] and "/" not in first["n"]
    # Minimal big-endian encoding: no leading zero octet.
    raw_n = base64.urlsafe_b64decode(first["n"] + "=" * (-len(first["n"]) % 4))
    assert raw_n[0] != 0 and len(raw_n) == private_key.key_size // 8
    # Private parts never appear.
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(first)
    json.dumps(jwks)  # serializable as is


def test_a_third_party_reads_the_jwks(private_key: rsa.RSAPrivateKey) -> None:
    jwks = render_jwks({"ck_a": private_key})
    parsed = jc_jwk.JWKSet.from_json(json.dumps(jwks))
    key = parsed.get_key("ck_a")
    assert key is not None
    assert key.export_to_pem() == private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_public_jwk_needs_a_kid(private_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError):
        public_jwk("", private_key)


def test_new_kid_is_random() -> None:
    kids = {new_kid() for _ in range(100)}
    assert len(kids) == 100
    assert all(kid.startswith("ck_") and len(kid) == 27 for kid in kids)


def test_pkcs8_der_round_trip(private_key: rsa.RSAPrivateKey) -> None:
    der = private_key_to_pkcs8_der(private_key)
    assert der[:1] == b"\x30"  # a DER SEQUENCE
    loaded = private_key_from_pkcs8_der(der)
    assert loaded.private_numbers() == private_key.private_numbers()


def test_pkcs8_loader_refuses_other_keys() -> None:
    ec_der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError):
        private_key_from_pkcs8_der(ec_der)
    small = rsa.generate_private_key(65537, 1024)
    with pytest.raises(ValueError):
        private_key_from_pkcs8_der(private_key_to_pkcs8_der(small))


def test_fingerprint_is_keyed_hmac_sha256() -> None:
    key = b"k" * 32
    expected = hmac.new(key, b"4242424242424242", hashlib.sha256).hexdigest()
    assert fingerprint("4242424242424242", key) == expected
    assert fingerprint("4242 4242-4242 4242", key) == expected
    assert fingerprint("4242424242424242", b"j" * 32) != expected
    assert expected != hashlib.sha256(b"4242424242424242").hexdigest()


def test_fingerprint_errors_do_not_echo_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        fingerprint("4242424242424242x", b"k" * 32)
    assert "4242" not in str(caught.value)
    with pytest.raises(ValueError):
        fingerprint("4242424242424242", b"short")


async def test_an_api_only_process_picks_up_key_rotations(fresh_database_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A process with ``PAYGATE_RUN_BACKGROUND=0`` serves the JWKS and encrypts vault records
    too: a checkout-key or vault data-key rotation made by another process reaches it
    (it used to publish the key it started with, and seal new cards under the old data key,
    until restarted; docs/operations.md, "Keys and rotation")."""
    monkeypatch.setattr("paygate_server.app.CARD_KEY_REFRESH_S", 0.05)
    settings = settings_for(fresh_database_url, tmp_path, run_background=False, vault_purge_interval_s=0.05)
    async with running_gateway(settings) as g:
        before = [k["kid"] for k in (await g.http.get("/checkout/v1/keys")).json()["keys"]]
        version = g.gateway.vault.keys.active_version
        _retired, kid = await rotate_card_key(g.gateway.db, g.gateway.master_key)
        _old, new_version = await rotate_data_key(g.gateway.db, g.gateway.master_key)

        async def published() -> list[str]:
            return [k["kid"] for k in (await g.http.get("/checkout/v1/keys")).json()["keys"]]

        assert await eventually(published, until=lambda kids: kids == [kid], what="the rotated key published")
        assert kid not in before and new_version != version
        await eventually(lambda: g.gateway.vault.keys.active_version == new_version,
                         what="the new vault data key in use")


async def test_a_sealed_checkout_key_is_loaded_on_the_seals_word(fresh_database_url: str, tmp_path: Path,
                                                                  private_key: rsa.RSAPrivateKey,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenSSL's check of an RSA key's numbers (p and q prime, and so on) was most of a
    gateway's start-up CPU. Bytes from outside are still checked; a key opened from its seal
    under the master key is not checked again (the AES-GCM seal proves it is the key this
    gateway generated), so even numbers that would fail the check load from the store."""
    n = private_key.private_numbers()
    inconsistent = rsa.RSAPrivateNumbers(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp, n.public_numbers).private_key(
        unsafe_skip_rsa_key_validation=True)
    with pytest.raises(ValueError):
        private_key_from_pkcs8_der(private_key_to_pkcs8_der(inconsistent))
    monkeypatch.setattr("paygate_server.cards.keystore.generate_private_key", lambda bits: inconsistent)
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:  # ensure_active_key seals it
        (kid,) = [k["kid"] for k in (await g.http.get("/checkout/v1/keys")).json()["keys"]]
        assert (await g.gateway.card_keys.private_keys_for(kid))[kid].private_numbers() == inconsistent.private_numbers()
