"""processor accounts and routing: a merchant's accounts (``pa_…``, credentials sealed)
and routing rules; an operation's id at its processor (``transactions.processor_id``).

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processor_accounts",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("credentials_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_processor_accounts_merchant", "processor_accounts", ["merchant_id"])
    op.create_table(
        "routing_rules",
        sa.Column("merchant_id", sa.String(length=64), sa.ForeignKey("merchants.id"), primary_key=True),
        sa.Column("rules", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    # The change-log triggers copy a row's live columns: reinstalled over the new one.
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=5):
        op.add_column("transactions", sa.Column("processor_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=4):
        with op.batch_alter_table("transactions") as batch:
            batch.drop_column("processor_id")
    op.drop_table("routing_rules")
    op.drop_index("ix_processor_accounts_merchant", table_name="processor_accounts")
    op.drop_table("processor_accounts")
