"""operator console reads: per-minute samples of every worker (``storage/schema_samples.py``)
and the indexes of the console's payment search, payment page and overview.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_payment_intents_created", "payment_intents", ["created_at", "id"]),
    ("ix_payment_intents_status_created", "payment_intents", ["status", "created_at", "id"]),
    ("ix_transactions_last4", "transactions", ["card_last4", "intent_id"]),
    ("ix_transactions_updated", "transactions", ["updated_at", "kind", "status", "connector"]),
    ("ix_webhook_events_intent", "webhook_events", ["intent_id", "change_id"]),
)


def upgrade() -> None:
    op.create_table(
        "console_samples",
        sa.Column("minute", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("worker", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("buckets", sa.Text(), nullable=True),
    )
    for name, table, columns in _INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("console_samples")
