"""Opaque, random, prefixed identifiers (SPEC §2): at least 128 bits of randomness.

Every id's random bytes come from one source, :func:`secrets.token_bytes` unless a
deterministic simulation (``paygate simulate``) sets another with :func:`set_source`: the
same seed must make the same ids, because ids order rows (the reconciler's queue, the
change history) and so decide what happens next.
"""
from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

__all__ = ["new_id", "random_token", "set_source"]

_source: Callable[[int], bytes] = secrets.token_bytes


def set_source(source: Callable[[int], bytes] | None) -> None:
    """Take random bytes from ``source`` (n → n bytes) instead of :mod:`secrets`; None goes
    back to :mod:`secrets`. For the simulation only: its ids are not secret."""
    global _source
    _source = secrets.token_bytes if source is None else source


def random_token(nbytes: int = 16) -> str:
    """Lower-case base32 without padding: URL-safe, case-insensitive, no ambiguous symbols."""
    return base64.b32encode(_source(nbytes)).decode("ascii").rstrip("=").lower()


def new_id(prefix: str, nbytes: int = 16) -> str:
    return f"{prefix}_{random_token(nbytes)}"
