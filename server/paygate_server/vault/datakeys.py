"""Versioned vault data keys, wrapped by the master key (envelope encryption).

A data key is 32 random bytes stored in ``sealed_keys`` (purpose ``vault-data-key``, kid
``vdk_<version>``) sealed under the master key's ``vault-data-key`` sub-key with the kid
as associated data. Exactly one version is ``active``: new cards are encrypted under it.
``paygate vault rotate-data-key`` retires it and creates the next version; retired
versions are kept for good, so every card ever stored keeps decrypting.

Each vault record is encrypted under its own key, HKDF(data key, record id): a data key
then never encrypts more than two messages with one derived key, so random 96-bit GCM
nonces stay far from the collision bound however many cards a data key protects.

Unwrapped keys are cached per process; an unknown version (another process rotated)
triggers one reload, at most once a second.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.sealed_keys import SealedKey, add_first_key, keys_of, rotate_keys

__all__ = ["DATA_KEY_PURPOSE", "DataKeyStore", "VaultDecryptError", "rotate_data_key"]

DATA_KEY_PURPOSE = "vault-data-key"
_KID = re.compile(r"vdk_([0-9]{1,9})")
_FORMAT_V1 = b"\x01"
_NONCE_BYTES = 12
_RELOAD_MIN_INTERVAL_S = 1.0


class VaultDecryptError(Exception):
    """A vault ciphertext did not open: wrong row, wrong key version, or tampered."""


def _version_of(kid: str) -> int | None:
    match = _KID.fullmatch(kid)
    return int(match.group(1)) if match else None


def _new_version(master: MasterKey, version: int) -> SealedKey:
    kid = f"vdk_{version}"  # (read back by _KID)
    return SealedKey(kid, DATA_KEY_PURPOSE, master.seal(DATA_KEY_PURPOSE, os.urandom(32), aad=kid.encode()),
                     public_jwk=None, state="active", created_at=now_us())


async def rotate_data_key(db: Database, master: MasterKey) -> tuple[list[int], int]:
    """Retire the active data key(s) and make the next version active: (retired, new).

    Two rotations racing on PostgreSQL both aim at the same next version; the primary key
    lets one win, and the loser raises instead of creating a second active key.
    """
    def next_version(before: Sequence[SealedKey]) -> SealedKey:
        versions = [v for v in (_version_of(key.kid) for key in before) if v is not None]
        return _new_version(master, max(versions, default=0) + 1)

    retired, new = await rotate_keys(db, DATA_KEY_PURPOSE, next_version)
    new_version = _version_of(new.kid)
    assert new_version is not None
    return sorted(v for key in retired if (v := _version_of(key.kid)) is not None), new_version


def _record_key(data_key: bytes, record_id: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"paygate/vault/record/" + record_id.encode()).derive(data_key)
    return AESGCM(derived)


class DataKeyStore:
    def __init__(self, db: Database, master: MasterKey) -> None:
        self._db = db
        self._master = master
        self._keys: dict[int, bytes] = {}
        self._active: int | None = None
        self._loaded_at = 0.0

    def __repr__(self) -> str:
        return f"DataKeyStore(active={self._active}, versions={sorted(self._keys)})"

    @property
    def active_version(self) -> int:
        if self._active is None:
            raise RuntimeError("the vault has no active data key (call ensure_active_key)")
        return self._active

    async def ensure_active_key(self) -> None:
        """Create version 1 on a fresh database (one winner among workers starting
        together, the others read its key)."""
        await add_first_key(self._db, DATA_KEY_PURPOSE, lambda: _new_version(self._master, 1))
        await self.reload()

    async def reload(self) -> None:
        rows = await keys_of(self._db, DATA_KEY_PURPOSE)
        keys: dict[int, bytes] = {}
        active: list[int] = []
        for row in rows:
            version = _version_of(row.kid)
            if version is None:
                continue
            keys[version] = self._keys.get(version) or self._master.open(
                DATA_KEY_PURPOSE, row.sealed, aad=row.kid.encode())
            if row.state == "active":
                active.append(version)
        self._keys = keys
        self._active = max(active) if active else (max(keys) if keys else None)
        self._loaded_at = time.monotonic()

    async def _key(self, version: int) -> bytes:
        key = self._keys.get(version)
        if key is None and time.monotonic() - self._loaded_at > _RELOAD_MIN_INTERVAL_S:
            await self.reload()
            key = self._keys.get(version)
        if key is None:
            raise VaultDecryptError("unknown vault data key version")
        return key

    def encrypt(self, version: int, record_id: str, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt under data-key ``version`` (normally :attr:`active_version`)."""
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT_V1 + nonce + _record_key(self._keys[version], record_id).encrypt(nonce, plaintext, aad)

    async def decrypt(self, version: int, record_id: str, sealed: bytes, aad: bytes) -> bytes:
        key = await self._key(version)
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _FORMAT_V1:
            raise VaultDecryptError("malformed vault ciphertext")
        try:
            return _record_key(key, record_id).decrypt(sealed[1:1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES:], aad)
        except InvalidTag:
            raise VaultDecryptError("vault ciphertext does not open for this row") from None
