"""Decrypting the card JWE that the checkout frame (and the SDK's ``encrypt_card``) produce.

The accepted shape is exactly one (SPEC §5): JWE compact serialization with the protected
header ``{"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": <a key we hold>}`` (``typ`` and
``cty`` strings are tolerated; anything else — ``zip``, ``crit``, ``jku``, ``jwk``,
``x5u``, ``epk``, … — is refused), a 12-byte IV, a 16-byte tag, AAD = the ASCII of the
encoded protected header, and a JSON payload::

    {"number": "4242424242424242", "expMonth": 12, "expYear": 2034, "cvc": "123",
     "name": "Jane Doe", "generationTime": "2025-01-01T12:00:00.000Z"}

``expMonth``/``expYear`` may be JSON numbers or digit strings; ``name`` may be absent or
``null`` (the SDK's server-side encryption may not have one).

No oracle: every failure — parsing, header, unknown ``kid``, RSA-OAEP, GCM tag, JSON,
field validation, age — raises the same :class:`InvalidCardData` with the same message,
raised outside any ``except`` block so that it carries no ``__context__`` (a
``JSONDecodeError`` would hold the decrypted document: the card number). When RSA-OAEP
fails, decryption goes on with a random content key, so a bad key wrap and a bad tag cost
the same work.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .pan import card_brand, last4, luhn_valid

__all__ = ["ALG", "ENC", "INVALID_CARD_DATA_MESSAGE", "CardPayload", "InvalidCardData", "decrypt_card_jwe"]

ALG: Final = "RSA-OAEP-256"
ENC: Final = "A256GCM"
INVALID_CARD_DATA_MESSAGE: Final = "encryptedCard is invalid or could not be decrypted"

_ALLOWED_HEADER_MEMBERS: Final = frozenset({"alg", "enc", "kid", "typ", "cty"})
_PAYLOAD_MEMBERS: Final = frozenset({"number", "expMonth", "expYear", "cvc", "name", "generationTime"})
_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_CEK_BYTES: Final = 32
# A card payload is ~200 bytes; the name is at most _MAX_NAME_CHARS UTF-8 characters.
_MAX_CIPHERTEXT_BYTES: Final = 2048
_MAX_TOKEN_CHARS: Final = 8192
_MAX_HEADER_BYTES: Final = 512
_MAX_NAME_CHARS: Final = 200
_DEFAULT_MAX_FUTURE_SKEW: Final = timedelta(minutes=5)

_OAEP: Final = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
_DIGITS = re.compile(r"[0-9]+")


class InvalidCardData(ValueError):
    """The encrypted card could not be accepted. Deliberately says nothing about why.

    Map it to ``400 invalid_request_error / parameter_invalid`` with
    ``param="encryptedCard"`` (SPEC §5).
    """

    def __init__(self) -> None:
        super().__init__(INVALID_CARD_DATA_MESSAGE)


class _Reject(Exception):
    """Internal: any reason to refuse. Never leaves this module."""


@dataclass(frozen=True, slots=True, repr=False)
class CardPayload:
    """A decrypted card. ``repr``/``str`` show only the brand, last 4 and expiry."""

    number: str = field(repr=False)
    exp_month: int
    exp_year: int
    cvc: str = field(repr=False)
    name: str | None = field(repr=False)
    generation_time: datetime

    @property
    def brand(self) -> str:
        return card_brand(self.number)

    @property
    def last4(self) -> str:
        return last4(self.number)

    def summary(self) -> dict[str, Any]:
        """The wire ``card`` object: ``{"brand", "last4", "expMonth", "expYear"}``."""
        return {"brand": self.brand, "last4": self.last4, "expMonth": self.exp_month, "expYear": self.exp_year}

    def __repr__(self) -> str:
        return (f"CardPayload(brand={self.brand!r}, last4={self.last4!r}, "
                f"exp_month={self.exp_month}, exp_year={self.exp_year})")

    __str__ = __repr__


def _b64url_decode(part: str) -> bytes:
    # Strict: the URL-safe alphabet only, no padding, no impossible lengths, and canonical
    # (the unused low bits of the last character must be zero).
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise _Reject
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != part:
        raise _Reject
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Reject
    return result


def _reject_constant(_: str) -> Any:
    raise _Reject


def _strict_json_object(raw: bytes) -> dict[str, Any]:
    # stdlib json rather than orjson: it can refuse duplicate members (RFC 7516 §4) and the
    # NaN/Infinity extensions. These documents are a few hundred bytes.
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Reject from None
    if not isinstance(value, dict):
        raise _Reject
    return value


def _check_header(header: dict[str, Any], private_keys: Mapping[str, rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    if not set(header) <= _ALLOWED_HEADER_MEMBERS or header.get("alg") != ALG or header.get("enc") != ENC:
        raise _Reject
    if not all(isinstance(header.get(optional, ""), str) for optional in ("typ", "cty")):
        raise _Reject
    kid = header.get("kid")
    key = private_keys.get(kid) if isinstance(kid, str) and kid else None
    if key is None:
        raise _Reject
    return key


def _unwrap_cek(key: rsa.RSAPrivateKey, encrypted_key: bytes) -> tuple[bytes, bool]:
    """The content key, or a random one and ``False``: the GCM step runs either way."""
    ok = True
    try:
        cek = key.decrypt(encrypted_key, _OAEP)
    except ValueError:
        cek, ok = b"", False
    if len(cek) != _CEK_BYTES:
        cek, ok = secrets.token_bytes(_CEK_BYTES), False
    return cek, ok


def _int_field(value: object, digits: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):  # bool: True is no month
        raise _Reject
    text = str(value)
    if not _DIGITS.fullmatch(text) or not digits[0] <= len(text) <= digits[1]:
        raise _Reject
    return int(text)


def _parse_rfc3339(value: object) -> datetime:
    # The pattern admits RFC 3339's shape only (fromisoformat alone takes week dates, a
    # space for the T, no offset ...); fromisoformat then refuses impossible dates, times
    # and offsets, and cuts a fraction to microseconds.
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise _Reject
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:
        raise _Reject from None


def _payload(document: dict[str, Any], window: tuple[datetime, datetime]) -> CardPayload:
    if not set(document) <= _PAYLOAD_MEMBERS:
        raise _Reject
    number = document.get("number")
    if not isinstance(number, str) or not _DIGITS.fullmatch(number):
        raise _Reject
    if not 12 <= len(number) <= 19 or not luhn_valid(number):
        raise _Reject
    exp_month = _int_field(document.get("expMonth"), (1, 2))
    if not 1 <= exp_month <= 12:
        raise _Reject
    exp_year = _int_field(document.get("expYear"), (4, 4))
    cvc = document.get("cvc")
    if not isinstance(cvc, str) or not _DIGITS.fullmatch(cvc) or not 3 <= len(cvc) <= 4:
        raise _Reject
    name = document.get("name")
    if name is not None:
        if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS:
            raise _Reject
        if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in name):
            raise _Reject
        name = name.strip() or None
    generated = _parse_rfc3339(document.get("generationTime"))
    if not window[0] <= generated <= window[1]:
        raise _Reject
    return CardPayload(number=number, exp_month=exp_month, exp_year=exp_year, cvc=cvc, name=name,
                       generation_time=generated.astimezone(UTC))


def _decrypt(token: str, private_keys: Mapping[str, rsa.RSAPrivateKey],
             window: tuple[datetime, datetime]) -> CardPayload:
    """``window``: the earliest and latest ``generationTime`` accepted."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        raise _Reject
    parts = token.split(".")
    if len(parts) != 5:
        raise _Reject
    header_b64, encrypted_key_b64, iv_b64, ciphertext_b64, tag_b64 = parts
    if len(header_b64) > _MAX_HEADER_BYTES * 4 // 3 + 4:
        raise _Reject
    header = _strict_json_object(_b64url_decode(header_b64))
    key = _check_header(header, private_keys)
    encrypted_key = _b64url_decode(encrypted_key_b64)
    iv = _b64url_decode(iv_b64)
    ciphertext = _b64url_decode(ciphertext_b64)
    tag = _b64url_decode(tag_b64)
    if (len(encrypted_key) != key.key_size // 8 or len(iv) != _IV_BYTES or len(tag) != _TAG_BYTES
            or not 0 < len(ciphertext) <= _MAX_CIPHERTEXT_BYTES):
        raise _Reject
    cek, cek_ok = _unwrap_cek(key, encrypted_key)
    try:
        plaintext = AESGCM(cek).decrypt(iv, ciphertext + tag, header_b64.encode("ascii"))
    except InvalidTag:
        raise _Reject from None
    if not cek_ok:
        # Unreachable in practice (a random key will not authenticate), but never trust it.
        raise _Reject
    return _payload(_strict_json_object(plaintext), window)


def decrypt_card_jwe(token: str, private_keys: Mapping[str, rsa.RSAPrivateKey], *, now: datetime,
                     max_age: timedelta = timedelta(hours=24),
                     max_future_skew: timedelta = _DEFAULT_MAX_FUTURE_SKEW) -> CardPayload:
    """Decrypt and validate an ``encryptedCard`` JWE.

    ``private_keys`` maps ``kid`` to key: the current key and the recently retired ones the
    caller still honours. ``now`` must be timezone-aware. ``generationTime`` must lie in
    ``[now - max_age, now + max_future_skew]``.

    Raises :class:`InvalidCardData` (always the same message, no cause or context) for
    anything wrong with the token; :class:`TypeError`/:class:`ValueError` only for a
    programming error in the arguments.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if max_age <= timedelta(0) or max_future_skew < timedelta(0):
        raise ValueError("max_age must be positive and max_future_skew not negative")
    try:
        return _decrypt(token, private_keys, (now - max_age, now + max_future_skew))
    except (_Reject, ValueError, TypeError, OverflowError, UnicodeError):
        # ValueError & co. cover anything unforeseen in the parsing of hostile input;
        # whatever it was, the answer is the same.
        pass
    # Raised here, outside the except block, so that no exception (and no plaintext held
    # by one) is chained to it.
    raise InvalidCardData()
