"""checkout vault tables.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vault_cards",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("data_key_version", sa.Integer(), nullable=False),
        sa.Column("pan_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("cvc_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("brand", sa.String(length=16), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index("ix_vault_cards_expires", "vault_cards", ["expires_at"], unique=False)
    op.create_index("ix_vault_cards_intent", "vault_cards", ["intent_id"], unique=False)
    op.create_table(
        "checkout_limits",
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("tokenizations", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("intent_id"),
    )


def downgrade() -> None:
    op.drop_table("checkout_limits")
    op.drop_index("ix_vault_cards_intent", table_name="vault_cards")
    op.drop_index("ix_vault_cards_expires", table_name="vault_cards")
    op.drop_table("vault_cards")
