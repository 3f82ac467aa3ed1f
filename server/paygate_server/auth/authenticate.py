"""Authenticating one request: key lookup (cached), signature, timestamp window, nonce."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

from paygate_server.auth.nonces import NonceBook
from paygate_server.auth.signing import signature_matches
from paygate_server.clock import parse_rfc3339_seconds
from paygate_server.crypto import MasterKey
from paygate_server.errors import ApiError
from paygate_server.merchants import StoredKey, load_api_key
from paygate_server.singleflight import ExpiringCache
from paygate_server.storage import Database

__all__ = ["Authenticator", "Principal"]

_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_API_KEY = re.compile(r"pk_(test|live)_[a-z0-9]{8,64}")


@dataclass(frozen=True, slots=True)
class Principal:
    merchant_id: str
    api_key: str


class Authenticator:
    """Verifies requests. Decrypted signing secrets are cached per process; the cache
    entry is re-read after ``cache_ttl_s`` so a revoked key stops working on every worker
    within that time (default 1 s; 0 disables caching)."""

    def __init__(self, db: Database, master: MasterKey, *, tolerance_s: int, cache_ttl_s: float) -> None:
        self._db = db
        self._master = master
        self._tolerance_s = tolerance_s
        self._keys: ExpiringCache[str, StoredKey | None] = ExpiringCache(cache_ttl_s, self._read_key,
                                                                           max_entries=10_000)
        self.nonces = NonceBook(db)

    async def _read_key(self, api_key: str) -> StoredKey | None:
        async with self._db.read() as conn:
            return await load_api_key(conn, self._master, api_key)

    async def authenticate(self, *, method: str, target: str, headers: dict[str, str], body: bytes) -> Principal:
        authorization = headers.get("authorization")
        timestamp = headers.get("x-request-timestamp")
        nonce = headers.get("x-request-nonce")
        signature = headers.get("x-signature")
        if not authorization or not timestamp or not nonce or not signature:
            raise ApiError("missing_credentials",
                           "Authorization, X-Request-Timestamp, X-Request-Nonce and X-Signature are required")
        scheme, _, api_key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not _API_KEY.fullmatch(api_key.strip()):
            raise ApiError("invalid_api_key", "the API key is not valid")
        api_key = api_key.strip()
        if not _NONCE.fullmatch(nonce):
            raise ApiError("invalid_signature", "X-Request-Nonce must be 16 to 64 characters of [A-Za-z0-9_-]")
        stored = await self._keys.get(api_key)
        if stored is None or stored.revoked:
            raise ApiError("invalid_api_key", "the API key is not valid")
        if not signature_matches(stored.secret, method, target, timestamp, nonce, body, signature):
            raise ApiError("invalid_signature", "the request signature does not match")
        # Only a correctly signed request learns about time and replays.
        ts = parse_rfc3339_seconds(timestamp)
        now_s = time.time()
        if ts is None:
            raise ApiError("stale_timestamp", "X-Request-Timestamp must be RFC 3339 UTC seconds, like 2023-10-15T14:22:31Z")
        if abs(now_s - ts) > self._tolerance_s:
            raise ApiError("stale_timestamp", f"X-Request-Timestamp is more than {self._tolerance_s} s from the server's clock")
        # Remember the nonce until its timestamp leaves the window: after that the
        # timestamp check alone refuses a replay.
        expires_at = (ts + self._tolerance_s + 1) * 1_000_000
        if not await self.nonces.remember(api_key, nonce, expires_at):
            raise ApiError("nonce_reused", "this nonce was already used with this API key")
        return Principal(merchant_id=stored.merchant_id, api_key=api_key)

