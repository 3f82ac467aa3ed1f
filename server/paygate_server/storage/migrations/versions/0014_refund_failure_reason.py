"""``refunds.failure_reason``: why a failed refund failed (the processor's words, or the
connector's when it sent nothing), kept as an attempt's ``error_message`` is and shown as
the refund's ``failureReason`` (docs/processing.md, "Refunds").

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The change-log triggers copy a row's columns: a refund's changes carry the new one.
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=14):
        op.add_column("refunds", sa.Column("failure_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=13):
        with op.batch_alter_table("refunds") as batch:
            batch.drop_column("failure_reason")
