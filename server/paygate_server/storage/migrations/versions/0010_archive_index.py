"""the archive's index by intent moves into the database: ``archive_index`` (one row per
intent and segment), written by the archive consumer with one statement per segment, in
place of one object per intent and segment in the archive (docs/history.md, "The index by
intent"). Segments archived before it are indexed by ``paygate audit reindex``.

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "archive_index",
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("intent_id", "segment"),
    )
    op.create_index("ix_archive_index_segment", "archive_index", ["segment"])


def downgrade() -> None:
    op.drop_index("ix_archive_index_segment", table_name="archive_index")
    op.drop_table("archive_index")
