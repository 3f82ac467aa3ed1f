"""Admin sessions and login throttling, kept in the shop's database.

Sessions are server-side: the signed cookie only names a session id, and the id counts
only while its row exists. Logging out deletes the row, so a copied cookie is worthless
afterwards (a signed-only cookie would stay valid until it expires). The table keeps a
SHA-256 of the id, never the id itself: a leaked database file opens no session.

Throttling: at most ``LOGIN_ATTEMPTS`` failed passwords per client per ``LOGIN_WINDOW_S``.
An attempt is counted as a failure *before* the password is checked and forgiven once it
turns out right, so concurrent guesses cannot slip past the limit between a check and a
write. Clients are keyed by address; an IPv6 client by its /64, which one host owns whole.
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from storefront.sqlite import SQLiteDatabase

__all__ = ["LOGIN_ATTEMPTS", "LOGIN_WINDOW_S", "AdminAuthStore", "LoginVerdict", "client_key"]

LOGIN_ATTEMPTS = 5
LOGIN_WINDOW_S = 15 * 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_sessions (
    sid_sha256 TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS admin_login_failures (
    client TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_login_failures_client ON admin_login_failures (client, failed_at);
"""


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def client_key(host: str | None) -> str:
    """The throttling key of a peer address."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(frozen=True)
class LoginVerdict:
    """``allowed``: check the password. Otherwise ``retry_after_s`` until a slot frees up."""

    allowed: bool
    retry_after_s: int = 0


class AdminAuthStore(SQLiteDatabase):
    def __init__(self, path: Path) -> None:
        super().__init__(path, _SCHEMA)

    # --- sessions ---------------------------------------------------------------------

    def open_session(self, max_age_s: int, now: float | None = None) -> str:
        """A new session id (256 random bits), valid for ``max_age_s``."""
        moment = int(time.time() if now is None else now)
        sid = secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute("DELETE FROM admin_sessions WHERE expires_at <= ?", (moment,))
            conn.execute("INSERT INTO admin_sessions (sid_sha256, created_at, expires_at) VALUES (?, ?, ?)",
                         (_digest(sid), moment, moment + max_age_s))
        return sid

    def session_is_open(self, sid: str, now: float | None = None) -> bool:
        moment = int(time.time() if now is None else now)
        with self._connect() as conn:
            row = conn.execute("SELECT 1 FROM admin_sessions WHERE sid_sha256 = ? AND expires_at > ?",
                               (_digest(sid), moment)).fetchone()
        return row is not None

    def close_session(self, sid: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM admin_sessions WHERE sid_sha256 = ?", (_digest(sid),))

    # --- login throttling -------------------------------------------------------------

    def begin_login(self, client: str, now: float | None = None) -> LoginVerdict:
        """Count this attempt as a failure up front, unless the client is out of attempts."""
        moment = time.time() if now is None else now
        since = moment - LOGIN_WINDOW_S
        with self._write() as conn:
            conn.execute("DELETE FROM admin_login_failures WHERE failed_at <= ?", (since,))
            recent = [row[0] for row in conn.execute(
                "SELECT failed_at FROM admin_login_failures WHERE client = ? ORDER BY failed_at", (client,))]
            if len(recent) >= LOGIN_ATTEMPTS:
                # A slot frees up when the oldest failure that still counts leaves the window.
                frees_at = recent[len(recent) - LOGIN_ATTEMPTS] + LOGIN_WINDOW_S
                return LoginVerdict(allowed=False, retry_after_s=max(1, math.ceil(frees_at - moment)))
            conn.execute("INSERT INTO admin_login_failures (client, failed_at) VALUES (?, ?)", (client, moment))
            return LoginVerdict(allowed=True)

    def login_succeeded(self, client: str) -> None:
        """The password was right: this client's failures are forgiven."""
        with self._write() as conn:
            conn.execute("DELETE FROM admin_login_failures WHERE client = ?", (client,))
