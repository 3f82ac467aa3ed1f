"""Opaque, random, prefixed identifiers (SPEC §2): at least 128 bits of randomness."""
from __future__ import annotations

import base64
import secrets

__all__ = ["new_id", "random_token"]


def random_token(nbytes: int = 16) -> str:
    """Lower-case base32 without padding: URL-safe, case-insensitive, no ambiguous symbols."""
    return base64.b32encode(secrets.token_bytes(nbytes)).decode("ascii").rstrip("=").lower()


def new_id(prefix: str, nbytes: int = 16) -> str:
    return f"{prefix}_{random_token(nbytes)}"
