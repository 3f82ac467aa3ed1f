"""The checkout's RSA keys, stored sealed under the master key (``sealed_keys`` table).

One key is ``active`` (published in the JWKS, the one browsers and ``encrypt_card``
encrypt to); ``paygate keys rotate-card-key`` retires it and makes a new one. A retired
key keeps decrypting for ``RETIRED_GRACE`` — longer than a JWE may live (24 h), so a page
opened before a rotation still works — and is then ignored.

Decrypted private keys are cached per process; an unknown ``kid`` (another process rotated)
triggers a reload (one at a time; keys already known are not decrypted again).
"""
from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric import rsa

from paygate_server import jsoncodec
from paygate_server.cards.keys import (
    DEFAULT_KEY_BITS,
    generate_private_key,
    new_kid,
    private_key_from_pkcs8_der,
    private_key_to_pkcs8_der,
    public_jwk,
)
from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.sealed_keys import SealedKey, add_first_key, keys_of, rotate_keys

__all__ = ["CardKeyStore", "RETIRED_GRACE", "CARD_KEY_PURPOSE", "rotate_card_key"]

CARD_KEY_PURPOSE = "card-jwe"
RETIRED_GRACE = timedelta(hours=25)


def _new_key(master: MasterKey, bits: int) -> SealedKey:
    key = generate_private_key(bits)
    kid = new_kid()
    sealed = master.seal(CARD_KEY_PURPOSE, private_key_to_pkcs8_der(key), aad=kid.encode())
    jwk = jsoncodec.dumps(public_jwk(kid, key.public_key())).decode()
    return SealedKey(kid, CARD_KEY_PURPOSE, sealed, public_jwk=jwk, state="active", created_at=now_us())


async def rotate_card_key(db: Database, master: MasterKey, *, bits: int = DEFAULT_KEY_BITS) -> tuple[list[str], str]:
    """Retire the active key(s) and create a new active one: (retired kids, new kid)."""
    retired, new = await rotate_keys(db, CARD_KEY_PURPOSE, lambda _before: _new_key(master, bits))
    return [key.kid for key in retired], new.kid


class CardKeyStore:
    def __init__(self, db: Database, master: MasterKey, *, bits: int = DEFAULT_KEY_BITS) -> None:
        self._db = db
        self._master = master
        self._bits = bits
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        self._jwks: dict[str, list[dict[str, str]]] = {"keys": []}
        self._loaded_at = 0.0
        self._reload_lock = asyncio.Lock()

    async def ensure_active_key(self) -> None:
        """Create the first key if there is none (one winner among gateways starting together)."""
        await add_first_key(self._db, CARD_KEY_PURPOSE, lambda: _new_key(self._master, self._bits))
        await self.reload()

    async def reload(self) -> None:
        cutoff = now_us() - int(RETIRED_GRACE.total_seconds() * 1_000_000)
        rows = await keys_of(self._db, CARD_KEY_PURPOSE)
        private: dict[str, rsa.RSAPrivateKey] = {}
        published = []
        for row in rows:
            if row.state == "retired" and (row.retired_at or 0) < cutoff:
                continue
            private[row.kid] = self._private.get(row.kid) or private_key_from_pkcs8_der(
                self._master.open(CARD_KEY_PURPOSE, row.sealed, aad=row.kid.encode()), sealed_by_us=True)
            if row.state == "active" and row.public_jwk is not None:
                published.append(jsoncodec.loads(row.public_jwk))
        self._private = private
        self._jwks = {"keys": published}
        self._loaded_at = time.monotonic()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return self._jwks

    async def private_keys_for(self, kid: str | None) -> dict[str, rsa.RSAPrivateKey]:
        """The keys that may decrypt now; reloads once if ``kid`` is new to this process."""
        if kid is not None and kid not in self._private:
            async with self._reload_lock:  # concurrent requests with the new kid: one reload
                if kid not in self._private and time.monotonic() - self._loaded_at > 0.05:
                    await self.reload()
        return self._private
