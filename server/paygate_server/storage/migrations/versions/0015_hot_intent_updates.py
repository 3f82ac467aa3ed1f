"""PostgreSQL: room on the pages of the hot tables, and the holds' index off the status.

PostgreSQL writes a new entry in every index of a row on an update, unless no indexed
column (an index's key, INCLUDE or predicate) changed and the new version fits on the same
page (a HOT update). So, on PostgreSQL only:

- ``ix_payment_intents_held`` is the intents with ``amount_capturable > 0`` — the same rows
  (only ``requires_capture`` holds an amount), a column the automatic path never changes,
  instead of a predicate on the status;
- ``payment_intents`` and ``idempotency_keys`` (a process request's key is claimed, then
  answered) leave 10 % of each new page free, so a new version fits beside the old.
  ``fillfactor`` applies to pages written from now on; existing ones keep theirs.

``ix_payment_intents_status_created`` stays, so a payment's status changes are still not HOT
(docs/performance.md, "HOT updates of the intent"): without it, a merchant's list by a status
it has few of (``in_progress``, to find stuck payments) read the merchant's whole history —
a parallel scan of the table, 180 ms at a million intents, growing with every payment.

Building the new held index reads ``payment_intents`` once while holding its writes (0.13 s
at 100,000 intents, docs/perf/history.md), like the indexes of migration 0008.

SQLite has no HOT and no fillfactor: this migration changes nothing on it.

Revision ID: 0015
Revises: 0014
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_FILLED = ("payment_intents", "idempotency_keys")


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    if not _postgresql():
        return
    op.drop_index("ix_payment_intents_held", table_name="payment_intents")
    op.create_index("ix_payment_intents_held", "payment_intents", ["id"],
                    postgresql_where=sa.text("amount_capturable > 0"))
    for table in _FILLED:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 90)")


def downgrade() -> None:
    if not _postgresql():
        return
    for table in _FILLED:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.drop_index("ix_payment_intents_held", table_name="payment_intents")
    op.create_index("ix_payment_intents_held", "payment_intents", ["id"],
                    postgresql_where=sa.text("status = 'requires_capture'"))
