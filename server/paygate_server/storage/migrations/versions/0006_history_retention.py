"""history retention: the change log's one pruning path (a guard row the DELETE trigger
checks), the per-intent sequence floor, an intent-sequence index that is no longer unique,
an index of each webhook object's events;
on PostgreSQL the change log partitioned by id range (every row moved over), on SQLite
AUTOINCREMENT ids (never reused once pruning emptied the table's end).

SQLite's space becomes reusable by ``PRAGMA incremental_vacuum``, which needs
``auto_vacuum=INCREMENTAL``; switching an existing file to it takes a VACUUM, which cannot
run inside the migration's transaction: :func:`paygate_server.storage.migrate.upgrade` does
it right after (docs/history.md "Retention").

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from paygate_server.storage import capture
from paygate_server.storage import change_log_partitions as parts
from paygate_server.storage.schema import change_log

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# change_log's columns as they were at this revision (later ones add theirs: 0011 prev_txid).
_COLUMNS_0006 = [c for c in change_log.columns if c.name != "prev_txid"]
_COLUMNS = ", ".join(c.name for c in _COLUMNS_0006)


def _guard_tables() -> None:
    op.create_table(
        "change_log_prune",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("through_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("pruned_through", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_segment", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("segment_prev", sa.String(length=64), server_default=sa.text("'" + "0" * 64 + "'"),
                  nullable=False),
        sa.Column("updated_at", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_change_log_prune_one_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO change_log_prune (id) VALUES (1)")
    op.create_table(
        "change_log_floor",
        sa.Column("intent_id", sa.String(length=64), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("intent_id"),
    )


def _postgres_partition(bind: sa.Connection) -> None:
    """Move change_log to a partitioned table of the same name, columns and id sequence."""
    op.execute("ALTER TABLE change_log RENAME TO change_log_unpartitioned")
    op.execute("ALTER TABLE change_log_unpartitioned DROP CONSTRAINT ux_change_log_intent_seq")
    op.execute("ALTER TABLE change_log_unpartitioned RENAME CONSTRAINT change_log_pkey"
               " TO change_log_unpartitioned_pkey")
    op.execute("DROP INDEX ix_change_log_txid")
    dialect = bind.dialect
    columns = ",\n  ".join(
        f"{c.name} {c.type.compile(dialect=dialect)}{'' if c.nullable else ' NOT NULL'}"
        + (" DEFAULT nextval('change_log_id_seq')" if c.name == "id" else "")
        for c in _COLUMNS_0006)
    op.execute(f"CREATE TABLE change_log (\n  {columns},\n  CONSTRAINT change_log_pkey PRIMARY KEY (id)\n)"
               " PARTITION BY RANGE (id)")
    # The sequence goes with the new table (dropping the old one would drop it otherwise).
    op.execute("ALTER SEQUENCE change_log_id_seq OWNED BY change_log.id")
    last, called = bind.execute(sa.text("SELECT last_value, is_called FROM change_log_id_seq")).one()
    next_id = last + 1 if called else last
    for lo, hi in parts.plan_ahead([], next_id, None):
        op.execute(parts.create_statement(lo, hi))
    op.execute(f"CREATE TABLE {parts.DEFAULT_PARTITION} PARTITION OF change_log DEFAULT")
    op.execute(f"INSERT INTO change_log ({_COLUMNS}) SELECT {_COLUMNS} FROM change_log_unpartitioned")
    op.execute("DROP TABLE change_log_unpartitioned")
    op.create_index("ix_change_log_intent_seq", "change_log", ["intent_id", "intent_seq"])
    op.create_index("ix_change_log_txid", "change_log", ["txid"])


def _sqlite_rebuild(bind: sa.Connection) -> None:
    """Rebuild change_log with AUTOINCREMENT and the non-unique intent-sequence index."""
    new = sa.Table("change_log_new", sa.MetaData(),
                   *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in _COLUMNS_0006),
                   sqlite_autoincrement=True)
    op.execute(sa.schema.CreateTable(new).compile(dialect=bind.dialect).string)
    op.execute(f"INSERT INTO change_log_new ({_COLUMNS}) SELECT {_COLUMNS} FROM change_log")
    op.execute("DROP TABLE change_log")
    op.execute("ALTER TABLE change_log_new RENAME TO change_log")
    op.create_index("ix_change_log_intent_seq", "change_log", ["intent_id", "intent_seq"])
    op.create_index("ix_change_log_txid", "change_log", ["txid"])


def upgrade() -> None:
    bind = op.get_bind()
    with capture.triggers_reinstalled(op.execute, bind, revision=6):
        _guard_tables()
        if bind.dialect.name == "postgresql":
            _postgres_partition(bind)
        else:
            _sqlite_rebuild(bind)
    # The webhook consumer's look-up of an entity's last event, once its changes are pruned.
    op.create_index("ix_webhook_events_object", "webhook_events", ["object_id", "change_id"])


def downgrade() -> None:
    raise NotImplementedError("0006 (history retention) cannot be undone: pruned history is in the archive only")
