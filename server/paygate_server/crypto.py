"""Secrets at rest: the master key and what it protects.

The master key (``PAYGATE_MASTER_KEY``, else a 0600 key file made on first run) never
encrypts data directly: HKDF derives one sub-key per purpose once at start-up, so a
signing secret can never be decrypted as a card key and vice versa. Sealing is
AES-256-GCM under those sub-keys.
"""
from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paygate_server.private_files import fsync_dir, private_dir, private_temp_file

__all__ = ["MasterKey", "SealError", "load_master_key"]

_FORMAT_V1 = b"\x01"


class SealError(Exception):
    """A sealed value could not be opened: wrong key, wrong purpose/AAD, or tampered."""


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._key = key

    def __repr__(self) -> str:  # never print key material
        return "MasterKey(<redacted>)"

    # One MasterKey lives as long as the process, so the cache keeping `self` alive leaks nothing.
    @lru_cache(maxsize=32)  # noqa: B019
    def _aead(self, purpose: str) -> AESGCM:
        sub = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"paygate/" + purpose.encode()).derive(self._key)
        return AESGCM(sub)

    def derive(self, purpose: str, length: int = 32) -> bytes:
        """Raw key material for a purpose (e.g. the card fingerprint HMAC key)."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                    info=b"paygate/raw/" + purpose.encode()).derive(self._key)

    def seal(self, purpose: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        return _FORMAT_V1 + nonce + self._aead(purpose).encrypt(nonce, plaintext, aad)

    def open(self, purpose: str, sealed: bytes, aad: bytes = b"") -> bytes:
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != _FORMAT_V1:
            raise SealError("malformed sealed value")
        try:
            return self._aead(purpose).decrypt(sealed[1:13], sealed[13:], aad)
        except InvalidTag as exc:
            raise SealError("sealed value does not open under this key") from exc


def _decode_key(text: str, where: str = "PAYGATE_MASTER_KEY") -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == 32:
            return key
    raise ValueError(f"{where} must be 32 bytes, as 64 hex digits or base64url")


def _read_key_file(key_file: Path) -> bytes:
    """The key in ``key_file``; a refusal names the file (once, a damaged file was refused
    as "PAYGATE_MASTER_KEY must be …", a variable nobody had set, or as a UnicodeDecodeError
    naming nothing)."""
    where = f"the key file {key_file}"
    try:
        text = key_file.read_bytes()[:1024].decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{where} must be 32 bytes, as 64 hex digits or base64url") from None
    return _decode_key(text, where)


def load_master_key(configured: str | None, key_file: Path) -> MasterKey:
    """The configured key, else the key file, created (mode 0600) on first run."""
    if configured:
        return MasterKey(_decode_key(configured))
    if key_file.exists():
        return MasterKey(_read_key_file(key_file))
    private_dir(key_file.parent, durable=True)
    key = os.urandom(32)
    # Write a private temp file, then hard-link it into place: the link either appears
    # complete or fails because another process already published its key.
    fd, tmp = private_temp_file(key_file)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, key_file)
    except FileExistsError:
        return MasterKey(_read_key_file(key_file))
    finally:
        tmp.unlink(missing_ok=True)
    # The key's name durable before anything is sealed under it: a crash must not keep
    # the sealed data and lose the only key that opens it.
    fsync_dir(key_file.parent)
    return MasterKey(key)
