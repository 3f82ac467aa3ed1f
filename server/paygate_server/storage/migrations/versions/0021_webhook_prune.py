"""``webhook_prune``: webhook retention's one row, how far its scan of old events has come
(storage/webhook_prune.py; docs/operations.md "Webhooks").

Deliveries are found by the index they already have (``ix_webhook_deliveries_due``: status
and ``next_attempt_at``), events by their change id (``ux_webhook_events_change``) from this
row's position, so no index is added to the two tables the relay writes at every payment.

Revision ID: 0021
Revises: 0020
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_prune",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("events_after", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_webhook_prune_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO webhook_prune (id) VALUES (1)")


def downgrade() -> None:
    op.drop_table("webhook_prune")
