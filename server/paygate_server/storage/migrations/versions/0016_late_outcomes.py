"""``late_outcomes``: a processor's notification contradicting an outcome the gateway had
settled already (a ``REFUND_FAILED`` after the ``REFUND``), kept for the operator
(docs/processors.md, "Adyen"; storage/schema_processors.py).

Revision ID: 0016
Revises: 0015
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "late_outcomes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=64), nullable=False),
        sa.Column("gateway_status", sa.String(length=16), nullable=False),
        sa.Column("processor_status", sa.String(length=16), nullable=False),
        sa.Column("processor_text", sa.Text(), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("handled_at", sa.BigInteger(), nullable=True),
        sa.Column("handled_by", sa.String(length=32), nullable=True),
        sa.UniqueConstraint("object_id", "processor_status", name="uq_late_outcomes_object_status"),
    )
    op.create_index("ix_late_outcomes_open", "late_outcomes", ["handled_at", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_late_outcomes_open", table_name="late_outcomes")
    op.drop_table("late_outcomes")
