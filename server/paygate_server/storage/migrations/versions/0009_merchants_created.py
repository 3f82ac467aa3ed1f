"""the console's merchants list pages newest first by ``(created_at, id)``: an index for it,
so a page reads its rows instead of sorting the table.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_merchants_created", "merchants", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_merchants_created", table_name="merchants")
