"""Tables of the change history's consumers: relay offsets, webhooks (SPEC §6, §8).

Neither is captured into ``change_log``: offsets and delivery bookkeeping are not history.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from paygate_server.storage.schema import change_log, metadata

__all__ = ["cdc_offsets", "change_log_prune", "change_log_floor", "change_log_heads", "archive_index", "history_restores", "webhook_endpoints", "webhook_events",
           "webhook_deliveries", "webhook_prune"]

# The relay reads change_log in windows of transaction ids (PostgreSQL); see storage/change_log.py.
Index("ix_change_log_txid", change_log.c.txid)

# Where each relay consumer is: everything before this position (storage.changes.Position,
# which says what it covers on each database) has been delivered.
cdc_offsets = Table(
    "cdc_offsets", metadata,
    Column("consumer", String(64), primary_key=True),
    Column("horizon", BigInteger, nullable=False, server_default=text("0")),
    Column("window_end", BigInteger, nullable=True),
    Column("last_id", BigInteger, nullable=False, server_default=text("0")),
    Column("delivered", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", BigInteger, nullable=False),
)

# The pruning path's one row (docs/history.md "Retention"). ``through_id``: the change-log
# DELETE trigger lets a row go only if its id is at or below it; the pruning transaction
# sets it and resets it to 0 before committing. ``pruned_through``: every change with an id
# at or below it has left the database (after being verified in the archive);
# ``next_segment``: the first archive segment that may still hold a change above it, and
# ``segment_prev`` the hash its manifest entry must chain to, ``segment_hash`` that entry's
# own hash as pruning read it (NULL: not read yet) — pruning may have taken part of that
# segment's changes, which the archive alone holds then (cdc/prune.py).
change_log_prune = Table(
    "change_log_prune", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("through_id", BigInteger, nullable=False, server_default=text("0")),
    Column("pruned_through", BigInteger, nullable=False, server_default=text("0")),
    Column("next_segment", BigInteger, nullable=False, server_default=text("1")),
    Column("segment_prev", String(64), nullable=False, server_default=text("'" + "0" * 64 + "'")),
    Column("segment_hash", String(64), nullable=True),
    Column("updated_at", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("id = 1", name="ck_change_log_prune_one_row"),
)

# An intent's last pruned sequence number, for intents whose every change was pruned: what
# a timeline says the database pruned through (cdc/timeline.py). One row per pruned
# intent, written by pruning only. (Numbering continues from change_log_heads.)
change_log_floor = Table(
    "change_log_floor", metadata,
    Column("intent_id", String(64), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

# Each intent's head of history: its last sequence number, the txid of that change and of
# the one before it (PostgreSQL; None on SQLite). The capture triggers move it on with
# every change (storage/capture.py); never pruned, so numbering never restarts.
change_log_heads = Table(
    "change_log_heads", metadata,
    Column("intent_id", String(64), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("last_txid", BigInteger, nullable=True),
    Column("prev_txid", BigInteger, nullable=True),
)

# The archive's index by intent (storage/archive_index.py): segment ``segment`` holds the
# intent's changes ``first_seq..last_seq`` (a hint: possibly more, never fewer). Written by
# the archive consumer, one row per intent per segment; read by timelines, pruning, verify.
archive_index = Table(
    "archive_index", metadata,
    Column("intent_id", String(64), primary_key=True),
    Column("segment", BigInteger, primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
)
Index("ix_archive_index_segment", archive_index.c.segment)

# Each restore of the database from a backup older than the archive, as `paygate history
# resume-after-restore` recorded it (storage/history_restores.py, docs/history.md "After a
# restore"): the archive's changes the database lost (``changes`` of them, ids
# ``first_id..last_id``, in segments up to ``archive_segment``), and the id the change log
# resumed after. ``paygate audit verify`` reports them instead of failing on them.
history_restores = Table(
    "history_restores", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", BigInteger, nullable=False),
    Column("first_id", BigInteger, nullable=False),
    Column("last_id", BigInteger, nullable=False),
    Column("changes", BigInteger, nullable=False),
    Column("intents", BigInteger, nullable=False),
    Column("archive_segment", BigInteger, nullable=False),
    Column("resumed_after_id", BigInteger, nullable=False),
)

webhook_endpoints = Table(
    "webhook_endpoints", metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("url", String(2048), nullable=False),
    # JSON list of event types, NULL for all of them.
    Column("events", Text, nullable=True),
    # The whsec_ secret, AES-256-GCM sealed under the master key (the endpoint id as AAD).
    Column("secret_sealed", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # enabled | disabled | deleted
    Column("disabled_reason", String(200), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_webhook_endpoints_merchant", "merchant_id", "status"),
)

# One event per status transition found in the change stream; change_id makes the relay's
# at-least-once delivery create each event exactly once.
webhook_events = Table(
    "webhook_events", metadata,
    Column("id", String(64), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("change_id", BigInteger, nullable=False),
    Column("intent_id", String(64), nullable=False),
    Column("object_id", String(64), nullable=False),
    # The exact body bytes every attempt sends (signatures cover them).
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("change_id", name="ux_webhook_events_change"),
    Index("ix_webhook_events_merchant", "merchant_id", "created_at"),
    # An entity's latest event: its status once pruning took its earlier changes (webhooks/events.py).
    Index("ix_webhook_events_object", "object_id", "change_id"),
    Index("ix_webhook_events_intent", "intent_id", "change_id"),  # a payment's page (0008)
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("endpoint_id", String(64), primary_key=True),
    Column("merchant_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # When the next attempt is due; while an attempt runs, when its lease ends.
    Column("next_attempt_at", BigInteger, nullable=False),
    # While an attempt runs, when its lease ends (as next_attempt_at); NULL otherwise. The
    # endpoint's deliveries in flight, whichever process sent them, are its rows with a
    # lease still to run (storage/webhook_deliveries.py).
    Column("lease_until", BigInteger, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "status"),
    # Only the rows with a lease: a few per endpoint, however long its backlog (0020).
    Index("ix_webhook_deliveries_leased", "endpoint_id", "lease_until",
          postgresql_where=text("lease_until IS NOT NULL"), sqlite_where=text("lease_until IS NOT NULL")),
)

# Webhook retention's one row (storage/webhook_prune.py, docs/operations.md "Webhooks"):
# ``events_after``, the change id the scan of old events has reached — every event at or
# below it was looked at once past the retention (those kept then are looked at again
# through their object or their deliveries, never by a scan from the start).
webhook_prune = Table(
    "webhook_prune", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("events_after", BigInteger, nullable=False, server_default=text("0")),
    Column("updated_at", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("id = 1", name="ck_webhook_prune_one_row"),
)
