"""``history_restores``: each restore of the database from a backup older than the archive,
as ``paygate history resume-after-restore`` recorded it (docs/history.md, "After a restore";
storage/schema_history.py).

Revision ID: 0018
Revises: 0017
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_restores",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.Column("first_id", sa.BigInteger(), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("changes", sa.BigInteger(), nullable=False),
        sa.Column("intents", sa.BigInteger(), nullable=False),
        sa.Column("archive_segment", sa.BigInteger(), nullable=False),
        sa.Column("resumed_after_id", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("history_restores")
