"""manual capture: an intent's capture method, capturable and received amounts and
cancellation reason; an operation's kind (charge, authorization, capture, void), its
authorization and a void's reason; "one success" per kind; an index of the holds.

Intents that succeeded before this revision received their whole amount: the backfill
says so, with the capture triggers off (a schema change, not a payment's history).

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SUCCEEDED = sa.text("status = 'succeeded'")
_HELD = sa.text("status = 'requires_capture'")


def upgrade() -> None:
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=4):
        op.add_column("payment_intents", sa.Column("capture_method", sa.String(length=16), nullable=False,
                                                   server_default=sa.text("'automatic'")))
        op.add_column("payment_intents", sa.Column("amount_capturable", sa.BigInteger(), nullable=False,
                                                   server_default=sa.text("0")))
        op.add_column("payment_intents", sa.Column("amount_received", sa.BigInteger(), nullable=False,
                                                   server_default=sa.text("0")))
        op.add_column("payment_intents", sa.Column("cancellation_reason", sa.String(length=16), nullable=True))
        op.add_column("transactions", sa.Column("kind", sa.String(length=16), nullable=False,
                                                server_default=sa.text("'charge'")))
        op.add_column("transactions", sa.Column("parent_id", sa.String(length=64), nullable=True))
        op.add_column("transactions", sa.Column("reason", sa.String(length=16), nullable=True))
        op.execute("UPDATE payment_intents SET amount_received = amount WHERE status = 'succeeded'")
        op.drop_index("ux_transactions_one_success", table_name="transactions")
        op.create_index("ux_transactions_one_success", "transactions", ["intent_id", "kind"], unique=True,
                        sqlite_where=_SUCCEEDED, postgresql_where=_SUCCEEDED)
        op.create_index("ix_payment_intents_held", "payment_intents", ["id"], unique=False,
                        sqlite_where=_HELD, postgresql_where=_HELD)


def downgrade() -> None:
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=1):
        op.drop_index("ix_payment_intents_held", table_name="payment_intents")
        op.drop_index("ux_transactions_one_success", table_name="transactions")
        op.create_index("ux_transactions_one_success", "transactions", ["intent_id"], unique=True,
                        sqlite_where=_SUCCEEDED, postgresql_where=_SUCCEEDED)
        for table, column in (("transactions", "reason"), ("transactions", "parent_id"), ("transactions", "kind"),
                              ("payment_intents", "cancellation_reason"), ("payment_intents", "amount_received"),
                              ("payment_intents", "amount_capturable"), ("payment_intents", "capture_method")):
            with op.batch_alter_table(table) as batch:
                batch.drop_column(column)
