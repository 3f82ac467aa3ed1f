"""``change_log_prune.segment_hash``: the hash of the manifest entry of the segment pruning's
cursor stands on, as pruning read it. Pruning can stop inside a segment (the retention
cutoff, a partition's end): the changes it took from that segment are then in the archive
only, and ``segment_prev`` (the entry before it) does not cover it — so verify holds that
entry to this hash too (docs/history.md, "verify").

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("change_log_prune", sa.Column("segment_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("change_log_prune") as batch:
        batch.drop_column("segment_hash")
