"""each intent's head of history in a row of its own: ``change_log_heads`` (its last sequence
number and the txid of its last two changes), and ``change_log.prev_txid`` (the txid of a
change's predecessor). The capture triggers number a change from the head instead of
looking for the intent's newest change in the log, and the relay tells a split intent from
``prev_txid`` instead of looking up each change's predecessor: on PostgreSQL both looked
in every partition of the log (docs/history.md, "Numbering").

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Each intent's newest change, and the floor of an intent whose every change was pruned.
# Written with no trigger installed; on PostgreSQL the ALTER TABLE before it holds
# change_log's lock until the migration commits, so no change slips in between.
_BACKFILL = (
    # One pass over the log: a correlated look-up per row would visit every partition per row.
    """INSERT INTO change_log_heads (intent_id, last_seq, last_txid)
       SELECT intent_id, intent_seq, txid FROM (
         SELECT intent_id, intent_seq, txid,
                row_number() OVER (PARTITION BY intent_id ORDER BY intent_seq DESC) AS newest
         FROM change_log) c
       WHERE newest = 1""",
    """INSERT INTO change_log_heads (intent_id, last_seq)
       SELECT f.intent_id, f.last_seq FROM change_log_floor f
       WHERE NOT EXISTS (SELECT 1 FROM change_log_heads h WHERE h.intent_id = f.intent_id)""",
)


def upgrade() -> None:
    op.add_column("change_log", sa.Column("prev_txid", sa.BigInteger(), nullable=True))
    op.create_table(
        "change_log_heads",
        sa.Column("intent_id", sa.String(length=64), primary_key=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_txid", sa.BigInteger(), nullable=True),
        sa.Column("prev_txid", sa.BigInteger(), nullable=True),
    )
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=11):
        for statement in _BACKFILL:
            op.execute(statement)


def downgrade() -> None:
    with capture.triggers_reinstalled(op.execute, op.get_bind(), revision=6):
        op.drop_table("change_log_heads")
        op.drop_column("change_log", "prev_txid")
