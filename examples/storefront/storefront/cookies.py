"""Tamper-proof cookies: ``base64url(JSON) "." base64url(HMAC-SHA256)``, with an expiry.

The MAC covers a purpose string too, so a cart cookie can never be replayed as an admin
session cookie. Nothing secret goes into a cookie; signing only stops the customer from
editing it (e.g. a cart line's quantity to -3).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["CookieSigner"]

MAX_TOKEN_LENGTH = 4000  # browsers cap a cookie at ~4 KiB


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CookieSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cookie secret needs at least 16 bytes")
        self._secret = secret

    def _mac(self, purpose: str, payload: str) -> str:
        message = purpose.encode() + b"\x00" + payload.encode("ascii")
        return _b64encode(hmac.new(self._secret, message, hashlib.sha256).digest())

    def sign(self, purpose: str, data: dict[str, Any], *, max_age_s: int, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + max_age_s)
        payload = _b64encode(json.dumps({"d": data, "e": expires}, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(purpose, payload)}"

    def unsign(self, purpose: str, token: str | None, *, now: float | None = None) -> dict[str, Any] | None:
        """The data, or None if the token is missing, forged, for another purpose or expired."""
        if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        try:
            if not hmac.compare_digest(mac.encode("ascii"), self._mac(purpose, payload).encode("ascii")):
                return None
            decoded = json.loads(_b64decode(payload))
        except (UnicodeError, ValueError, binascii.Error):
            return None
        if not isinstance(decoded, dict) or not isinstance(decoded.get("d"), dict):
            return None
        expires = decoded.get("e")
        if not isinstance(expires, int) or expires < (time.time() if now is None else now):
            return None
        data: dict[str, Any] = decoded["d"]
        return data
