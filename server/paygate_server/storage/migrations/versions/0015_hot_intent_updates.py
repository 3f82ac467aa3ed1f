"""PostgreSQL: the payment path's updates of an intent are in place (HOT) again.

PostgreSQL writes a new entry in every index of a row on an update, unless no indexed
column (an index's key, INCLUDE or predicate) changed and the new version fits on the same
page. Every payment moves its intent's ``status`` twice, and since migration 0008 the status
was in ``ix_payment_intents_status_created`` and in ``ix_payment_intents_held``'s predicate:
no update of an intent was HOT, each wrote all six indexes (docs/performance.md, "HOT
updates"). So, on PostgreSQL only:

- ``ix_payment_intents_status_created`` goes: the console's search by status walks
  ``ix_payment_intents_created`` newest first instead;
- ``ix_payment_intents_held`` is the intents with ``amount_capturable > 0`` — the same rows
  (only ``requires_capture`` holds an amount), a column the automatic path never changes;
- ``payment_intents`` and ``idempotency_keys`` (a process request's key is claimed, then
  answered) leave 10 % of each new page free, so the new version fits beside the old.
  ``fillfactor`` applies to pages written from now on; existing ones keep theirs.

Building the new held index reads ``payment_intents`` once while holding its writes (0.13 s
at 100,000 intents, docs/perf/history.md), like the indexes of migration 0008.

SQLite has no HOT: an update there rewrites only the indexes of the columns it changes, so its
status index stays and this migration changes nothing on it.

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
    op.drop_index("ix_payment_intents_status_created", table_name="payment_intents")
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
    op.create_index("ix_payment_intents_status_created", "payment_intents", ["status", "created_at", "id"])
