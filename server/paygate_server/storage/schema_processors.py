"""Tables of the merchants' processor accounts and routing rules (SPEC §7).

``processor_accounts``: one row per account (``pa_…``) — its connector kind, name and
settings in the clear, its credentials sealed under the master key (purpose
``processor-credentials``, the account id as AAD: a sealed blob moved to another row does
not open). An account is never deleted, only marked removed: attempts made through it
are still reconciled, captured, voided and refunded there.

``routing_rules``: a merchant's ordered rule list as one JSON document (SPEC §7).

Neither is captured into ``change_log``: credentials must never reach the history, and an
account is configuration, not a payment's story.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, LargeBinary, String, Table, Text

from paygate_server.storage.schema import metadata

__all__ = ["processor_accounts", "routing_rules"]

processor_accounts = Table(
    "processor_accounts", metadata,
    Column("id", String(32), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("kind", String(32), nullable=False),  # simulator | stripe | adyen
    Column("name", String(200), nullable=False),
    Column("settings", Text, nullable=False),  # JSON object of strings: nothing secret
    Column("credentials_sealed", LargeBinary, nullable=False),  # JSON object, sealed
    Column("created_at", BigInteger, nullable=False),
    Column("removed_at", BigInteger, nullable=True),
    Index("ix_processor_accounts_merchant", "merchant_id"),
)

routing_rules = Table(
    "routing_rules", metadata,
    Column("merchant_id", String(64), ForeignKey("merchants.id"), primary_key=True),
    Column("rules", Text, nullable=False),  # JSON list, validated before it is stored
    Column("updated_at", BigInteger, nullable=False),
)
