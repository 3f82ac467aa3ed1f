"""``webhook_deliveries.lease_until``: when a delivery's running attempt's lease ends (NULL
when none runs), so that ``PAYGATE_WEBHOOK_ENDPOINT_CONCURRENCY`` counts an endpoint's
deliveries in flight across every process on the database, not per process
(docs/reliability.md, "Webhook endpoints misbehaving"; storage/webhook_deliveries.py).

The index holds only the rows with a lease. Attempts running while the upgrade runs have
none and are not counted: for at most one lease, an endpoint may get that many more.

Revision ID: 0020
Revises: 0019
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_LEASED = sa.text("lease_until IS NOT NULL")


def upgrade() -> None:
    op.add_column("webhook_deliveries", sa.Column("lease_until", sa.BigInteger(), nullable=True))
    op.create_index("ix_webhook_deliveries_leased", "webhook_deliveries", ["endpoint_id", "lease_until"],
                    postgresql_where=_LEASED, sqlite_where=_LEASED)


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_leased", table_name="webhook_deliveries")
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("lease_until")
