"""SHA-256 digests written in the letters ``a``–``p`` instead of hex's ``0``–``f``.

Some client text is stored only as its digest (a request nonce, an ``Idempotency-Key``,
the hash of a keyed request). Written in hex, about 1.5 % of SHA-256 digests of random
input hold a 13–19-digit run that passes the Luhn check, which a PCI DSS data scan of the
database reports as a card number; a digest of letters holds no digit at all
(docs/api.md, "a nonce is stored as a digest"). The letters are hex's digits shifted one
for one, so the two spellings of a digest are a bijection (:func:`hex_spelling`): the
idempotency store finds a key stored in hex by an older version from the letters form
(storage/idempotency_forms.py).
"""
from __future__ import annotations

import hashlib

__all__ = ["as_letters", "hex_spelling", "sha256_letters"]

_HEX = "0123456789abcdef"
_LETTERS = "abcdefghijklmnop"
# Migrations 0017 and 0019 spell the same mapping in SQL (``translate``); never change it in place.
_HEX_AS_LETTERS = str.maketrans(_HEX, _LETTERS)
_LETTERS_AS_HEX = str.maketrans(_LETTERS, _HEX)


def as_letters(hexdigest: str) -> str:
    """A lowercase hex digest written in the letters a–p (same length, same value)."""
    return hexdigest.translate(_HEX_AS_LETTERS)


def hex_spelling(letters: str) -> str:
    """The lowercase hex spelling of a digest written in letters (:func:`as_letters`'s inverse)."""
    return letters.translate(_LETTERS_AS_HEX)


def sha256_letters(data: bytes) -> str:
    """SHA-256 of ``data``, 64 letters a–p."""
    return hashlib.sha256(data).hexdigest().translate(_HEX_AS_LETTERS)
