"""Console sessions: a random 32-byte id in the cookie, only its SHA-256 in the database.

A session ends at its idle deadline (no request by the operator for ``idle_s``; a page's
own polling does not count), its absolute deadline (``ttl_s`` after login), at logout and
when its account is disabled. ``last_seen_at`` is written at most once a minute, so a
page's burst of requests costs one write, not one each (the idle deadline is therefore
honoured to within a minute). A login deletes the operator's sessions that are over, so
the table keeps about the live ones.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.operators import (
    find_session,
    insert_session,
    revoke_session,
    touch_session,
)

__all__ = ["COOKIE_NAME", "Sessions", "SessionPolicy", "SignedIn", "decode_id", "encode_id", "hash_session_id", "new_id_bytes"]

COOKIE_NAME = "paygate_console"
TOUCH_EVERY_US = 60 * 1_000_000
_ID_BYTES = 32
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_s: int = 30 * 60
    ttl_s: int = 12 * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(idle_s=settings.console_idle_timeout_s, ttl_s=settings.console_session_ttl_s)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Who a request comes from: the operator and the raw session id (for its CSRF token)."""
    session_id: bytes
    operator_id: str
    email: str
    role: str


def hash_session_id(session_id: bytes) -> str:
    return hashlib.sha256(session_id).hexdigest()


def new_id_bytes() -> bytes:
    return secrets.token_bytes(_ID_BYTES)


def encode_id(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_id(cookie: str) -> bytes | None:
    """A cookie's 32 random bytes (a session's, or the login form's), None if malformed."""
    if len(cookie) != 43:  # 32 bytes, base64url without padding
        return None
    try:
        raw = base64.urlsafe_b64decode(cookie + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _ID_BYTES else None


class Sessions:
    def __init__(self, db: Database, policy: SessionPolicy) -> None:
        self.db = db
        self.policy = policy

    async def start(self, operator_id: str, *, remote_addr: str | None, user_agent: str | None) -> str:
        """A new session; returns the cookie's value (shown to nobody else, stored hashed)."""
        session_id, now = new_id_bytes(), now_us()
        async with self.db.write() as conn:  # with the operator's sessions that are over
            await insert_session(conn, id_hash=hash_session_id(session_id), operator_id=operator_id, now=now,
                                 remote_addr=remote_addr, user_agent=(user_agent or "")[:300] or None,
                                 created_before=now - self.policy.ttl_s * _US,
                                 seen_before=now - self.policy.idle_s * _US)
        return encode_id(session_id)

    async def resume(self, cookie: str | None, *, activity: bool = True) -> SignedIn | None:
        """The live session of this cookie, None if there is none (malformed, unknown,
        revoked, expired, or its account disabled). ``activity=False``: a request a page's
        script makes by itself (the Overview's refresh), which must not put the idle
        deadline off — an unattended page would otherwise keep its session alive."""
        session_id = decode_id(cookie) if cookie else None
        if session_id is None:
            return None
        id_hash = hash_session_id(session_id)
        async with self.db.read() as conn:
            row = await find_session(conn, id_hash)
        now = now_us()
        if (row is None or row.revoked_at is not None or row.operator_disabled_at is not None
                or now - row.last_seen_at > self.policy.idle_s * _US
                or now - row.created_at > self.policy.ttl_s * _US):
            return None
        if activity and now - row.last_seen_at >= TOUCH_EVERY_US:
            async with self.db.write() as conn:
                await touch_session(conn, id_hash, now)
        return SignedIn(session_id, row.operator_id, row.email, row.role)

    async def end(self, cookie: str | None) -> bool:
        """Revoke the session (logout); False: it was not live."""
        session_id = decode_id(cookie) if cookie else None
        if session_id is None:
            return False
        async with self.db.write() as conn:
            return await revoke_session(conn, hash_session_id(session_id), now_us())
