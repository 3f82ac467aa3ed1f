"""JWE compact serialization with ``RSA-OAEP-256`` + ``A256GCM`` (RFC 7516/7518), and the
card encryption of SPEC §5 built on it.

Encryption only: the SDK never holds the private key. The output is what the hosted
checkout's WebCrypto code produces, so the gateway decrypts both the same way::

    BASE64URL(protected header) . BASE64URL(RSA-OAEP-256(CEK)) . BASE64URL(IV)
        . BASE64URL(ciphertext) . BASE64URL(tag)

with a random 256-bit CEK, a random 96-bit IV, AAD = the ASCII of the first part, and the
16-byte GCM tag split off the end of the AES-GCM output.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._signing import format_timestamp

__all__ = ["encrypt_card", "jwe_encrypt", "public_key_from_jwk", "select_jwk"]

ALG = "RSA-OAEP-256"
ENC = "A256GCM"
_MIN_RSA_BITS = 2048
_TAG_BYTES = 16

#: What ``encrypt_card`` / ``jwe_encrypt`` accept as the gateway's key: a JWKS
#: (``{"keys": [...]}``), one JWK, or a ``cryptography`` RSA public key.
KeyLike = Mapping[str, Any] | rsa.RSAPublicKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def select_jwk(jwks: Mapping[str, Any], kid: str | None = None) -> Mapping[str, Any]:
    """The key to encrypt with: the one with ``kid`` if given, else the first usable one.

    A key is usable if it is RSA and not marked for another use or algorithm. The gateway
    lists its current key first (SPEC §5), so "first" is the current key.
    """
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise ValueError('a JWKS must be an object with a "keys" list')  # noqa: TRY004
    for key in keys:
        if not isinstance(key, Mapping) or key.get("kty") != "RSA":
            continue
        if key.get("use", "enc") != "enc" or key.get("alg", ALG) != ALG:
            continue
        if kid is None or key.get("kid") == kid:
            return key
    wanted = f" with kid {kid!r}" if kid is not None else ""
    raise ValueError(f"the JWKS has no RSA {ALG} encryption key{wanted}")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """An RSA public key from a JWK's ``n`` and ``e`` (at least 2048 bits)."""
    if jwk.get("kty") != "RSA":
        raise ValueError("only RSA keys are supported")
    n, e = jwk.get("n"), jwk.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        raise ValueError('an RSA JWK needs string "n" and "e"')  # noqa: TRY004
    try:
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(_b64url_decode(e), "big"), int.from_bytes(_b64url_decode(n), "big")
        )
        key = numbers.public_key()
    except ValueError as exc:
        raise ValueError(f"invalid RSA JWK: {exc}") from None
    _check_size(key)
    return key


def _check_size(key: rsa.RSAPublicKey) -> None:
    if key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"RSA keys must have at least {_MIN_RSA_BITS} bits")


def _resolve(key: KeyLike, kid: str | None) -> tuple[rsa.RSAPublicKey, str | None]:
    if isinstance(key, rsa.RSAPublicKey):
        _check_size(key)
        return key, kid
    if not isinstance(key, Mapping):
        raise TypeError("expected a JWKS, a JWK, or an RSA public key")
    jwk = select_jwk(key, kid) if "keys" in key else key
    jwk_kid = jwk.get("kid")
    if kid is None and isinstance(jwk_kid, str):
        kid = jwk_kid
    return public_key_from_jwk(jwk), kid


def _encrypt_key(public_key: rsa.RSAPublicKey, cek: bytes) -> bytes:
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return public_key.encrypt(cek, oaep)


def check_encrypts(public_key: rsa.RSAPublicKey) -> None:
    """``ValueError`` unless OpenSSL encrypts with ``public_key``: some keys that parse it
    refuses ("Encryption failed"), e.g. a modulus over 16,384 bits, or an exponent over
    64 bits with a modulus over 3,072."""
    _encrypt_key(public_key, bytes(32))


def jwe_encrypt(key: KeyLike, kid: str | None, payload: bytes) -> str:
    """Encrypt ``payload`` as a JWE compact serialization (``RSA-OAEP-256``/``A256GCM``).

    ``key`` is a JWKS (the key with ``kid``, or the first usable one, is used), one JWK,
    or an RSA public key. The protected header is ``{"alg","enc","kid"}``; ``kid`` is the
    argument if given, else the JWK's, and is left out only if neither has one.
    """
    public_key, kid = _resolve(key, kid)
    header: dict[str, str] = {"alg": ALG, "enc": ENC}
    if kid is not None:
        header["kid"] = kid
    protected = b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    cek = AESGCM.generate_key(bit_length=256)
    iv = os.urandom(12)
    encrypted_key = _encrypt_key(public_key, cek)
    sealed = AESGCM(cek).encrypt(iv, payload, protected.encode("ascii"))
    ciphertext, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
    return ".".join((protected, b64url(encrypted_key), b64url(iv), b64url(ciphertext), b64url(tag)))


def _digits(value: str | int, what: str, lengths: range, *, separators: bool = False) -> str:
    # Spaces and dashes are separators only inside a card number given as a string: a
    # minus sign (exp_year=-30, an int number < 0) or "1-2" as a month is not a digit.
    text = str(value)
    if separators and isinstance(value, str):
        text = text.replace(" ", "").replace("-", "")
    if not (text.isascii() and text.isdigit() and len(text) in lengths):
        # Never echo the value: it may be a card number or a CVC.
        raise ValueError(f"{what} must be {lengths.start}-{lengths.stop - 1} digits")
    return text


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def card_payload(
    *,
    number: str | int,
    exp_month: int | str,
    exp_year: int | str,
    cvc: str | int,
    name: str | None = None,
    generation_time: datetime | None = None,
) -> bytes:
    """The JSON plaintext of an encrypted card (SPEC §5), after format checks.

    ``number`` (as a string) may contain spaces or dashes, no other field may;
    ``exp_year`` may have 2 digits (20YY).
    ``expMonth``/``expYear`` are sent as integers, like the intent's ``card`` object.
    """
    pan = _digits(number, "number", range(12, 20), separators=True)
    if not _luhn_valid(pan):
        # The gateway refuses it anyway, with an opaque 400: say why here.
        raise ValueError("number fails the Luhn check")
    month = int(_digits(exp_month, "exp_month", range(1, 3)))
    if not 1 <= month <= 12:
        raise ValueError("exp_month must be 1-12")
    year_text = _digits(exp_year, "exp_year", range(2, 5))
    if len(year_text) == 3:
        raise ValueError("exp_year must be 2 or 4 digits")
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    code = _digits(cvc, "cvc", range(3, 5))
    body: dict[str, Any] = {"number": pan, "expMonth": month, "expYear": year, "cvc": code}
    if name is not None:
        body["name"] = name
    moment = generation_time or datetime.now(UTC)
    body["generationTime"] = format_timestamp(moment)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encrypt_card(
    key: KeyLike,
    *,
    number: str | int,
    exp_month: int | str,
    exp_year: int | str,
    cvc: str | int,
    name: str | None = None,
    kid: str | None = None,
    generation_time: datetime | None = None,
) -> str:
    """Encrypt card details for ``process(..., encrypted_card=...)`` (SPEC §5).

    ``key`` is the gateway's JWKS (``GET /checkout/v1/keys``), one of its JWKs, or an RSA
    public key (then ``kid`` is required). Returns the JWE compact serialization. The card
    details are checked for format only; nothing of them is logged or put in an error.
    """
    if isinstance(key, rsa.RSAPublicKey) and kid is None:
        raise ValueError("kid is required with a bare RSA public key: the gateway needs it")
    payload = card_payload(
        number=number,
        exp_month=exp_month,
        exp_year=exp_year,
        cvc=cvc,
        name=name,
        generation_time=generation_time,
    )
    public_key, resolved_kid = _resolve(key, kid)
    if resolved_kid is None:
        raise ValueError('the key has no "kid": the gateway needs it')
    return jwe_encrypt(public_key, resolved_kid, payload)
