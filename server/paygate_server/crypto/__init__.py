"""Secrets at rest: the master key and what it protects.

The master key (``PAYGATE_MASTER_KEY``, else a 0600 key file made on first run) never
encrypts data directly: HKDF derives one sub-key per purpose once at start-up, so a
signing secret can never be decrypted as a card key and vice versa.
"""
from __future__ import annotations

from paygate_server.crypto.masterkey import MasterKey, SealError, load_master_key

__all__ = ["MasterKey", "SealError", "load_master_key"]
