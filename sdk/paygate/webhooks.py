"""Verify (and, for tests, sign) webhook deliveries: ``paygate.webhooks.verify(...)``.

Standard Webhooks 1.0 (SPEC §6); see ``paygate._webhooks`` for the scheme.
"""

from __future__ import annotations

from ._exceptions import SignatureVerificationError
from ._webhooks import DEFAULT_TOLERANCE, construct_event, sign, sign_headers, verify

__all__ = [
    "DEFAULT_TOLERANCE",
    "SignatureVerificationError",
    "construct_event",
    "sign",
    "sign_headers",
    "verify",
]

# The `from __future__` import binds a public-looking name; the compiler flag outlives it.
del annotations
