"""Merchant request authentication (SPEC §3): API key, HMAC signature, time window, nonce.

Every ``/api/v1`` request is checked here before any other work: the signature over the
raw bytes received, a timestamp within the tolerance in both directions, and a nonce never
seen before for that key within the window — remembered in the database, so every worker
and host shares it.
"""
from __future__ import annotations

from paygate_server.auth.authenticate import Authenticator
from paygate_server.auth.signing import signature_matches

__all__ = ["Authenticator", "signature_matches"]
