"""Tables of the merchants' processor accounts and routing rules (SPEC §7).

``processor_accounts``: one row per account (``pa_…``) — its connector kind, name and
settings in the clear, its credentials sealed under the master key (purpose
``processor-credentials``, the account id as AAD: a sealed blob moved to another row does
not open). An account is never deleted, only marked removed: attempts made through it
are still reconciled, captured, voided and refunded there.

``routing_rules``: a merchant's ordered rule list as one JSON document (SPEC §7).

``late_outcomes``: one row per contradiction of a settled outcome — a processor's
notification saying that a capture, void or refund the gateway settled ``succeeded`` failed
after all (Adyen's ``CAPTURE_FAILED``/``REFUND_FAILED`` once the scheme refused it), or the
reverse. Outcomes settle once, so the operation keeps its status; the row is what tells the
operator (``paygate reconcile``, the console's Reconciliation page) until one marks it
handled. One row per operation and contradicting status: a notification delivered again
records nothing more. ``processor_text`` is the processor's words, masked as a refund's
``failure_reason`` is (never a card number). Migration 0016.

None is captured into ``change_log``: credentials must never reach the history, an account
is configuration, and a late outcome changes no payment (it is the operator's to-do).
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from paygate_server.storage.schema import metadata

__all__ = ["late_outcomes", "processor_accounts", "routing_rules"]

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

late_outcomes = Table(
    "late_outcomes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # capture | void | refund
    Column("object_id", String(64), nullable=False),  # txn_… or re_…
    Column("intent_id", String(64), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("connector", String(64), nullable=False),  # the route: pa_… or the default processor's name
    Column("gateway_status", String(16), nullable=False),  # what the gateway had settled
    Column("processor_status", String(16), nullable=False),  # what the processor said later
    Column("processor_text", Text, nullable=True),  # masked: never card data
    Column("received_at", BigInteger, nullable=False),
    Column("handled_at", BigInteger, nullable=True),
    Column("handled_by", String(32), nullable=True),  # op_… who marked it handled
    UniqueConstraint("object_id", "processor_status", name="uq_late_outcomes_object_status"),
    Index("ix_late_outcomes_open", "handled_at", "received_at"),
)
