"""The database schema as SQLAlchemy Core tables (no ORM on request paths).

Times are BIGINT microseconds since the epoch (see :mod:`paygate_server.clock`); money is
BIGINT minor units. JSON documents are stored as text produced by orjson so both SQLite
and PostgreSQL keep exactly the bytes we wrote.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = ["metadata", "merchants", "merchant_origins", "api_keys", "request_nonces",
           "idempotency_keys", "idempotency_letters_since", "payment_intents", "transactions", "refunds", "change_log",
           "sealed_keys", "reconcile_queue", "CAPTURED_TABLES"]

metadata = MetaData()

merchants = Table(
    "merchants", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # The console's merchants list, newest first by (created_at, id) (migration 0009).
    Index("ix_merchants_created", "created_at", "id"),
)

merchant_origins = Table(
    "merchant_origins", metadata,
    Column("merchant_id", String(64), ForeignKey("merchants.id"), primary_key=True),
    Column("origin", String(300), primary_key=True),
)

api_keys = Table(
    "api_keys", metadata,
    Column("api_key", String(128), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    # The signing secret, AES-256-GCM sealed under the master key with the API key as AAD.
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    Index("ix_api_keys_merchant", "merchant_id"),
)

# Replay protection (SPEC §3): a nonce is remembered for as long as its timestamp is
# acceptable, by every worker and host, because they all share this table. The nonce is
# kept as its digest, 64 letters (storage/nonces.py, ``nonce_digest``): never the client's
# text, which can look like a card number to a PCI data scanner.
request_nonces = Table(
    "request_nonces", metadata,
    Column("api_key", String(128), primary_key=True),
    Column("nonce", String(64), primary_key=True),  # the digest (migration 0017)
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_request_nonces_expires", "expires_at"),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("merchant_id", String(64), primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    # SHA-256 over method, path and body: "the same request" (SPEC §3). Both digests are
    # written in letters since migration 0019 (hex in rows of the code before it; see
    # storage/idempotency_forms.py).
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # in_progress | done
    Column("locked_at", BigInteger, nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # What a multi-phase request began (a refund's id), written with its claim: an abandoned
    # claim is answered with it as it is now (storage/payments.py, ``_claim``).
    Column("resource_id", String(64), nullable=True),
    Index("ix_idempotency_keys_created", "created_at"),
)

# When migration 0019 ran (µs; at most one row): since then keys are stored in letters, and
# for a while a claim also looks for a key's hex row (storage/idempotency_forms.py).
idempotency_letters_since = Table(
    "idempotency_letters_since", metadata,
    Column("upgraded_at", BigInteger, primary_key=True),
)

payment_intents = Table(
    "payment_intents", metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), ForeignKey("merchants.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_refunded", BigInteger, nullable=False, server_default=text("0")),
    Column("product_details", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("metadata", Text, nullable=True),
    # SHA-256 of the client secret: the checkout authenticates with it, we never need it back.
    Column("client_secret_hash", String(64), nullable=False, unique=True),
    Column("last_error", Text, nullable=True),
    Column("card", Text, nullable=True),
    # Bumped on every change; the per-intent order of the change history.
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("failed_attempts", Integer, nullable=False, server_default=text("0")),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Manual capture (SPEC §4); added by migration 0004, hence after the rest.
    Column("capture_method", String(16), nullable=False, server_default=text("'automatic'")),
    Column("amount_capturable", BigInteger, nullable=False, server_default=text("0")),  # held, requires_capture only
    Column("amount_received", BigInteger, nullable=False, server_default=text("0")),  # charged or captured
    Column("cancellation_reason", String(16), nullable=True),  # requested | expired
    Index("ix_payment_intents_merchant_created", "merchant_id", "created_at", "id"),
    # The console's payment search, newest first (migration 0008): all payments, by status.
    Index("ix_payment_intents_created", "created_at", "id"),
    # By status: the console's search and a merchant's list of a status it has few of. It
    # costs HOT updates of the intent on PostgreSQL (docs/performance.md, "HOT updates of the
    # intent"); without it such a list reads the merchant's whole history.
    Index("ix_payment_intents_status_created", "status", "created_at", "id"),
    # The holds (the reconciler's expiry sweep reads them): few rows, not a table scan. On
    # PostgreSQL by the held amount, the same rows (only requires_capture holds one), a column
    # the automatic path never changes (migration 0015). The table's fillfactor is 90 there.
    Index("ix_payment_intents_held", "id", sqlite_where=text("status = 'requires_capture'"),
          postgresql_where=text("amount_capturable > 0")),
)

# One operation at the processor: a charge, an authorization, or a capture or void of an
# authorization (``parent_id``). The partial unique indexes make "at most one operation in
# flight per intent" and "at most one success of each kind, ever" (a charge, or an
# authorization and its capture or void) facts the database keeps.
transactions = Table(
    "transactions", metadata,
    Column("id", String(64), primary_key=True),
    Column("intent_id", String(64), ForeignKey("payment_intents.id"), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | unknown | succeeded | failed
    Column("reference", String(64), nullable=False, unique=True),
    # Where the operation went: a processor account (``pa_…``), or the name of the
    # gateway's default connector for a merchant with no account. A capture, void or
    # refund always goes where its authorization went.
    Column("connector", String(32), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("card_brand", String(16), nullable=True),
    Column("card_last4", String(4), nullable=True),
    Column("card_exp_month", Integer, nullable=True),
    Column("card_exp_year", Integer, nullable=True),
    Column("card_fingerprint", String(64), nullable=True),
    Column("vault_id", String(64), nullable=True),
    Column("auth_code", String(32), nullable=True),
    Column("decline_code", String(64), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False, server_default=text("'charge'")),  # charge | authorization | capture | void
    Column("parent_id", String(64), nullable=True),  # a capture's or void's authorization
    Column("reason", String(16), nullable=True),  # a void's: requested | expired
    # The processor's own id of the operation's object (Stripe ``pi_…``, Adyen
    # ``pspReference``), recorded as soon as it is known: captures, voids, refunds and
    # look-ups of a lost answer address the processor by it. Migration 0005.
    Column("processor_id", String(128), nullable=True),
    Index("ux_transactions_one_in_flight", "intent_id", unique=True,
          sqlite_where=text("status IN ('pending', 'unknown')"), postgresql_where=text("status IN ('pending', 'unknown')")),
    Index("ux_transactions_one_success", "intent_id", "kind", unique=True,
          sqlite_where=text("status = 'succeeded'"), postgresql_where=text("status = 'succeeded'")),
    Index("ix_transactions_intent", "intent_id"),
    # The console (migration 0008): search by card last 4; the overview's minutes of settles.
    Index("ix_transactions_last4", "card_last4", "intent_id"),
    # (covering: the overview's count per minute, kind, status and route reads no table row)
    Index("ix_transactions_updated", "updated_at", "kind", "status", "connector"),
)

refunds = Table(
    "refunds", metadata,
    Column("id", String(64), primary_key=True),
    Column("intent_id", String(64), ForeignKey("payment_intents.id"), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("reference", String(64), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),  # pending | unknown | succeeded | failed
    Column("reason", String(200), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # Why a failed refund failed: the processor's words, or the connector's when it sent
    # nothing (masked as an attempt's error_message is: processing/settle.py). Migration 0014.
    Column("failure_reason", Text, nullable=True),
    Index("ix_refunds_intent", "intent_id"),
)

# What the reconciler still has to settle: one row per charge attempt or refund whose
# outcome is not known yet. Kept apart from the captured tables so that scheduling and
# leases never show up as history.
reconcile_queue = Table(
    "reconcile_queue", metadata,
    Column("kind", String(16), primary_key=True),  # charge | refund
    Column("object_id", String(64), primary_key=True),
    Column("intent_id", String(64), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("checks", Integer, nullable=False, server_default=text("0")),
    Column("last_result", String(200), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_reconcile_queue_due", "due_at"),
)

# The change history (SPEC §8), written only by database triggers (see
# paygate_server.storage.capture) in the same transaction as the change itself.
change_log = Table(
    "change_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("entity", String(32), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("op", String(8), nullable=False),
    Column("intent_id", String(64), nullable=False),
    Column("merchant_id", String(64), nullable=False),
    Column("intent_seq", BigInteger, nullable=False),
    Column("data", Text, nullable=False),
    # PostgreSQL: the writing transaction's id, to read rows in commit-safe order.
    Column("txid", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    # PostgreSQL: the txid of the intent's change before this one (None: the first), from
    # change_log_heads — the relay's test for a split intent (storage/change_log.py).
    Column("prev_txid", BigInteger, nullable=True),
    # Not unique: on PostgreSQL the table is partitioned by id and a unique index must
    # include the partition key. The capture trigger numbers an intent's changes under
    # its row lock (storage/capture.py) and `paygate audit verify` checks every intent's
    # sequence is gap-free (docs/history.md "Retention").
    Index("ix_change_log_intent_seq", "intent_id", "intent_seq"),
    # SQLite: AUTOINCREMENT, so an id is never reused after pruning emptied the table's end.
    sqlite_autoincrement=True,
)

# Key material sealed under the master key: card (JWE) private keys, vault data keys.
sealed_keys = Table(
    "sealed_keys", metadata,
    Column("kid", String(64), primary_key=True),
    Column("purpose", String(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("public_jwk", Text, nullable=True),
    Column("state", String(16), nullable=False),  # active | retired
    Column("created_at", BigInteger, nullable=False),
    Column("retired_at", BigInteger, nullable=True),
    Index("ix_sealed_keys_purpose", "purpose", "state"),
)

# Tables whose every insert and update is captured into change_log.
CAPTURED_TABLES: dict[str, str] = {
    "payment_intents": "payment_intent",
    "transactions": "transaction",
    "refunds": "refund",
}

# Domain tables live in their own modules and register on the same metadata.
from paygate_server.storage import (  # noqa: E402,F401
    schema_checkout,
    schema_console,
    schema_history,
    schema_processors,
    schema_samples,
)
