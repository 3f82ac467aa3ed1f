"""``idempotency_keys.resource_id``: what a multi-phase request began (a refund's id), written
with its claim. A claim abandoned after its first phase committed is answered with that
resource as it is now, never begun again (docs/api.md, "Idempotency").

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("idempotency_keys", sa.Column("resource_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.drop_column("resource_id")
