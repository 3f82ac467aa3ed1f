"""The checkout's RSA key pairs, their JWKS, and the keyed card-number fingerprint.

Key size: :data:`DEFAULT_KEY_BITS` (**2048 bits**) by default — the one default every new
checkout key comes from (``Settings.card_key_bits``, ``PAYGATE_CARD_KEY_BITS``, the key
store, :func:`generate_private_key`). NIST SP 800-57 puts RSA-2048 at 112-bit security,
acceptable through 2030, and one RSA-OAEP decryption runs per payment, on the hot path:
3072 bits (the 128-bit level) costs about four times as much per decryption, so it is a
setting (``PAYGATE_CARD_KEY_BITS=3072``), not the default (decision in
``docs/processing.md``, "Checkout keys"). Nothing under :data:`MIN_KEY_BITS` is generated or
loaded.

Storage is the caller's job: :func:`private_key_to_pkcs8_der` gives the bytes to encrypt
under the master key, :func:`private_key_from_pkcs8_der` reads them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["DEFAULT_KEY_BITS", "MIN_KEY_BITS", "fingerprint", "generate_private_key", "new_kid",
           "private_key_from_pkcs8_der", "private_key_to_pkcs8_der", "public_jwk", "render_jwks"]

DEFAULT_KEY_BITS: Final = 2048
MIN_KEY_BITS: Final = 2048
_PUBLIC_EXPONENT: Final = 65537

RSAKey = rsa.RSAPrivateKey | rsa.RSAPublicKey


def generate_private_key(bits: int = DEFAULT_KEY_BITS) -> rsa.RSAPrivateKey:
    """A fresh RSA private key (e = 65537) for RSA-OAEP-256 card encryption."""
    if bits < MIN_KEY_BITS or bits % 8:
        raise ValueError(f"RSA key size must be a multiple of 8 and at least {MIN_KEY_BITS}")
    return rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)


def new_kid() -> str:
    """A random key id for the JWKS (``ck_`` + 96 random bits, hex)."""
    return "ck_" + secrets.token_hex(12)


def _b64url_uint(value: int) -> str:
    # RFC 7518 §2: Base64urlUInt, big-endian, minimal length (zero is one zero octet).
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_jwk(kid: str, key: RSAKey) -> dict[str, str]:
    """The public JWK of ``key`` (a private key's public half is used) under ``kid``."""
    if not kid:
        raise ValueError("kid must not be empty")
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "kid": kid,
        "use": "enc",
        "alg": "RSA-OAEP-256",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def render_jwks(keys: Mapping[str, RSAKey]) -> dict[str, list[dict[str, str]]]:
    """The JWKS document served at ``GET /checkout/v1/keys``.

    Pass the keys browsers should encrypt to, **current key first**: the checkout frame
    uses the first suitable key. Keep recently retired keys out of the JWKS (browsers must
    stop using them) but in the mapping given to ``decrypt_card_jwe`` for a while (a page
    opened before the rotation may still send them).
    """
    return {"keys": [public_jwk(kid, key) for kid, key in keys.items()]}


def private_key_to_pkcs8_der(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER bytes of ``key``; the caller encrypts them before storing."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def private_key_from_pkcs8_der(data: bytes, *, sealed_by_us: bool = False) -> rsa.RSAPrivateKey:
    """Load what :func:`private_key_to_pkcs8_der` produced; refuses non-RSA and small keys.

    ``sealed_by_us``: ``data`` was just opened from a seal under the master key (AES-GCM,
    the kid as associated data), so it is byte for byte a key this gateway generated and
    checked; OpenSSL's consistency check of the RSA numbers (primality tests of p and q:
    tens of ms of CPU for 2048 bits, most of a gateway's start-up) is then skipped. Bytes from
    anywhere else are always checked."""
    key = serialization.load_der_private_key(data, password=None, unsafe_skip_rsa_key_validation=sealed_by_us)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"RSA key smaller than {MIN_KEY_BITS} bits")
    return key


def fingerprint(pan: str, key: bytes) -> str:
    """Keyed fingerprint of a card number: lowercase hex HMAC-SHA256(key, digits).

    The same card gives the same fingerprint under one key (to spot a card reused across
    intents or merchants) without the hash being reversible by brute force over the small
    PAN space, as an unkeyed hash would be (PCI DSS 3.5.1.1). Spaces and dashes are ignored.
    """
    if len(key) < 16:
        raise ValueError("fingerprint key must be at least 16 bytes")
    digits = pan.replace(" ", "").replace("-", "")
    if not digits.isascii() or not digits.isdigit():
        # Never echo the value: it may be a card number with a typo.
        raise ValueError("card number must contain only digits, spaces or dashes")
    return hmac.new(key, digits.encode("ascii"), hashlib.sha256).hexdigest()
