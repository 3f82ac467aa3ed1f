"""Signature checking over the raw request bytes (SPEC §3).

The canonical string is built by the SDK's signing module — one definition, used by the
clients that sign and the server that verifies; the reference vector is pinned in both
test suites.
"""
from __future__ import annotations

import hmac

from paygate._signing import compute_signature

__all__ = ["signature_matches"]


def signature_matches(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes,
                      presented: str) -> bool:
    try:
        expected = compute_signature(secret, method, target, timestamp, nonce, body)
        presented_bytes = presented.encode("ascii")
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), presented_bytes)
