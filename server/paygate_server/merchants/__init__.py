"""Merchants, their allowed origins, and their API key pairs.

A key pair is the API key (``pk_…``, sent on every request) and its signing secret
(``sk_…``, never sent). The secret is needed to verify HMACs, so it is stored sealed under
the master key (AES-256-GCM, the API key as associated data) and shown once, at creation.
"""
from __future__ import annotations

from paygate_server.merchants.repository import (
    KeyPair,
    MerchantError,
    allow_origins,
    create_key,
    create_merchant,
    get_merchant,
    list_origins,
    load_api_key,
    normalize_origin,
    revoke_key,
)

__all__ = [
    "KeyPair",
    "MerchantError",
    "allow_origins",
    "create_key",
    "create_merchant",
    "get_merchant",
    "list_origins",
    "load_api_key",
    "normalize_origin",
    "revoke_key",
]
