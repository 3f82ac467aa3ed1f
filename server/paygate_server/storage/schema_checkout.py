"""Tables of the hosted checkout: the card vault and its tokens (SPEC §5).

``vault_cards`` holds one row per tokenization: the card number and the CVC, each
AES-256-GCM encrypted under a per-record key derived from a versioned data key (the data
keys live in ``sealed_keys``, purpose ``vault-data-key``, wrapped by the master key), the
keyed fingerprint, the displayable summary (brand, last 4, expiry) and the token that
stands for the row — kept only as its SHA-256, so a database dump holds no usable token.

``checkout_limits`` counts tokenizations per payment intent (= per clientSecret), for the
card-testing limit; it is bumped by one conditional upsert.

Neither table is captured into ``change_log``: card data must never reach the history.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table

from paygate_server.storage.schema import metadata

__all__ = ["checkout_limits", "vault_cards"]

vault_cards = Table(
    "vault_cards", metadata,
    Column("id", String(64), primary_key=True),
    # SHA-256 (hex) of the token ``tok_…``: redemption looks it up, a dump cannot replay it.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("merchant_id", String(64), nullable=False),
    Column("intent_id", String(64), nullable=False),
    Column("data_key_version", Integer, nullable=False),
    Column("pan_sealed", LargeBinary, nullable=False),
    # Dropped at authorization, or when the token expires (whichever comes first).
    Column("cvc_sealed", LargeBinary, nullable=True),
    Column("fingerprint", String(64), nullable=False),
    Column("brand", String(16), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used_at", BigInteger, nullable=True),
    Index("ix_vault_cards_expires", "expires_at"),
    Index("ix_vault_cards_intent", "intent_id"),
)

checkout_limits = Table(
    "checkout_limits", metadata,
    Column("intent_id", String(64), primary_key=True),
    Column("tokenizations", Integer, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
