"""Request signing (SPEC §3): ``paygate.signing.canonical_string(...)`` and friends.

The clients sign every ``/api/v1`` request themselves; these are for tools, tests and other
verifiers. See ``paygate._signing`` for the scheme.
"""

from __future__ import annotations

from ._signing import (
    body_sha256,
    canonical_string,
    compute_signature,
    format_timestamp,
    new_nonce,
    sign_request,
    verify_signature,
)

__all__ = [
    "body_sha256",
    "canonical_string",
    "compute_signature",
    "format_timestamp",
    "new_nonce",
    "sign_request",
    "verify_signature",
]

# The `from __future__` import binds a public-looking name; the compiler flag outlives it.
del annotations
