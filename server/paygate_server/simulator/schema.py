"""The simulator store's tables (SQLite), and the upgrade of a store file written by an
older simulator. The store (``store.py``) creates them on open; their columns are named
after the records' fields (``records.py``), in the same order.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA", "migrate"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    reference         TEXT PRIMARY KEY,
    payment_intent_id TEXT NOT NULL,
    merchant_id       TEXT NOT NULL,
    amount            INTEGER NOT NULL,
    currency          TEXT NOT NULL,
    card_brand        TEXT NOT NULL,
    card_last4        TEXT NOT NULL,
    status            TEXT NOT NULL,
    auth_code         TEXT,
    decline_code      TEXT,
    created_at        TEXT NOT NULL,
    amount_refunded   INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS charges_by_intent ON charges (payment_intent_id);
CREATE INDEX IF NOT EXISTS charges_by_merchant ON charges (merchant_id);
CREATE INDEX IF NOT EXISTS charges_by_created ON charges (created_at);
CREATE TABLE IF NOT EXISTS refunds (
    reference        TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL,
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refunds_by_charge ON refunds (charge_reference);
CREATE INDEX IF NOT EXISTS refunds_by_created ON refunds (created_at);
-- References of card 4000000000001034 that already got their one 503 (no charge).
CREATE TABLE IF NOT EXISTS retry_marks (
    reference  TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
) WITHOUT ROWID;
-- Every capture and void request's result, refusals included (a replay returns it).
CREATE TABLE IF NOT EXISTS captures (
    reference        TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL,
    amount           INTEGER NOT NULL,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,
    decline_code     TEXT,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS captures_by_charge ON captures (charge_reference);
CREATE INDEX IF NOT EXISTS captures_by_created ON captures (created_at);
-- One capture per authorization, whatever the code above it decides.
CREATE UNIQUE INDEX IF NOT EXISTS captures_one_per_charge
    ON captures (charge_reference) WHERE status = 'captured';
CREATE TABLE IF NOT EXISTS voids (
    reference        TEXT PRIMARY KEY,
    charge_reference TEXT NOT NULL,
    status           TEXT NOT NULL,
    decline_code     TEXT,
    created_at       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS voids_by_charge ON voids (charge_reference);
-- The simulator's clock: how far POST /v1/_clock moved it ahead of the wall clock. Kept
-- so that time never runs backwards across a restart (a hold that expired stays so).
CREATE TABLE IF NOT EXISTS clock (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    offset_us INTEGER NOT NULL
);
"""

# Columns added with authorizations; a store file from before gets them on open.
_CHARGE_COLUMNS_ADDED = (
    ("capture", "INTEGER NOT NULL DEFAULT 1"),
    ("expires_at", "TEXT"),
    ("amount_captured", "INTEGER NOT NULL DEFAULT 0"),
    ("voided", "INTEGER NOT NULL DEFAULT 0"),
)


def migrate(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(charges)")}
    for name, ddl in _CHARGE_COLUMNS_ADDED:
        if name not in have:
            conn.execute(f"ALTER TABLE charges ADD COLUMN {name} {ddl}")
