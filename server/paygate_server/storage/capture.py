"""Change capture enforced by the database (SPEC §8).

Triggers on every captured table write one ``change_log`` row per insert or update, in
the same transaction as the change, so no code path can forget to record history. Each
row carries a per-intent sequence (``intent_seq``) and a JSON snapshot of the new row
(never secrets: the captured tables hold no card number, CVC or client secret).

PostgreSQL also gets the writing transaction's id (``txid``) for commit-safe reading, and a
``NOTIFY paygate_changes`` whose payload is the intent id, delivered at commit — the
cross-worker wake-up for long-polls and streams.

The DDL lives here (not in a migration file) so migrations and tests build the exact same
triggers; a migration calls :func:`install` for the dialect it runs on.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Mapping

from sqlalchemy import Connection, Table, inspect

from paygate_server.storage.schema import CAPTURED_TABLES, metadata

__all__ = ["install_statements", "live_columns", "triggers_reinstalled", "uninstall_statements", "snapshot_expr",
           "intent_id_expr", "SNAPSHOT_EXCLUDED", "NOTIFY_CHANNEL", "PRUNING_REVISION", "HEADS_REVISION"]

NOTIFY_CHANNEL = "paygate_changes"

# The migrations whose triggers changed how a change is numbered: 0006 added the pruning
# path (and the floor), 0011 the heads.
PRUNING_REVISION = 6
HEADS_REVISION = 11

# Columns never copied into the history.
SNAPSHOT_EXCLUDED = {"client_secret_hash", "vault_id", "card_fingerprint"}


def intent_id_expr(table_name: str, row: str = "NEW") -> str:
    """The intent a row of ``table_name`` (SQL name ``row``) belongs to."""
    return f"{row}.id" if table_name == "payment_intents" else f"{row}.intent_id"


def _snapshot_columns(table: Table, present: Collection[str] | None) -> list[str]:
    return [c.name for c in table.columns
            if c.name not in SNAPSHOT_EXCLUDED and (present is None or c.name in present)]


def snapshot_expr(dialect: str, table_name: str, row: str = "NEW", present: Collection[str] | None = None) -> str:
    """The JSON snapshot of a captured row (SQL name ``row``) as a change's ``data`` holds it:
    the one expression per dialect, used by the capture triggers (``NEW``) and by ``paygate
    audit verify`` to compute what a row's newest change must be (a table alias). PostgreSQL:
    a jsonb value (the trigger stores it as text); SQLite: JSON text."""
    table = metadata.tables[table_name]
    if dialect == "postgresql":
        excluded = "".join(f" - '{c}'" for c in sorted(SNAPSHOT_EXCLUDED) if c in table.columns)
        return f"to_jsonb({row}){excluded}"
    pairs = ", ".join(f"'{c}', {row}.{c}" for c in _snapshot_columns(table, present))
    return f"json_object({pairs})"


def _last_seq(intent: str, pruning: bool) -> str:
    """Before revision 0011: the intent's last sequence number from its newest change in
    the log or, once pruning has taken all of them, the one ``change_log_floor`` remembers."""
    floor = f"(SELECT last_seq FROM change_log_floor WHERE intent_id = {intent}), " if pruning else ""
    return f"COALESCE(MAX(intent_seq), {floor}0)"


def _bump_head(intent: str, txid: str | None) -> str:
    """Revision 0011 on: move the intent's head one sequence number on and, on PostgreSQL
    (``txid``), remember the txid of the change it was at (the new change's predecessor).
    One row per intent, written under the intent's row lock like the change itself, so its
    numbers are the log's: gap-free, and never reused after pruning (heads are never
    pruned). A look-up of the log by intent instead would visit every partition of it
    (storage/change_log_partitions.py)."""
    if txid is None:  # SQLite: an unqualified column of DO UPDATE is the existing row's
        return f"""INSERT INTO change_log_heads (intent_id, last_seq) VALUES ({intent}, 1)
    ON CONFLICT (intent_id) DO UPDATE SET last_seq = last_seq + 1"""
    return f"""INSERT INTO change_log_heads AS h (intent_id, last_seq, last_txid) VALUES ({intent}, 1, {txid})
    ON CONFLICT (intent_id) DO UPDATE SET last_seq = h.last_seq + 1, prev_txid = h.last_txid, last_txid = {txid}"""


def _sqlite_statements(table_name: str, entity: str, present: Collection[str] | None, revision: int) -> list[str]:
    intent = intent_id_expr(table_name)
    if revision >= HEADS_REVISION:
        head = f"  {_bump_head(intent, None)};\n"
        seq = f"(SELECT last_seq FROM change_log_heads WHERE intent_id = {intent})"
    else:
        head = ""
        seq = f"(SELECT {_last_seq(intent, revision >= PRUNING_REVISION)} + 1 FROM change_log WHERE intent_id = {intent})"
    return [f"""CREATE TRIGGER trg_{table_name}_capture_{op} AFTER {op.upper()} ON {table_name}
FOR EACH ROW BEGIN
{head}  INSERT INTO change_log (entity, entity_id, op, intent_id, merchant_id, intent_seq, data, txid, created_at)
  VALUES ('{entity}', NEW.id, '{op}', {intent}, NEW.merchant_id, {seq},
          {snapshot_expr('sqlite', table_name, 'NEW', present)}, NULL, NEW.updated_at);
END""" for op in ("insert", "update")]


def _postgres_statements(table_name: str, entity: str, _present: Collection[str] | None, revision: int) -> list[str]:
    snapshot = snapshot_expr("postgresql", table_name, "NEW")
    intent = intent_id_expr(table_name)
    lock = (
        ""
        if table_name == "payment_intents"
        # Serialize all changes of one intent behind its row lock, always taken first,
        # so intent_seq is gap-free and ordered without deadlocks.
        else f"  PERFORM 1 FROM payment_intents WHERE id = {intent} FOR UPDATE;\n"
    )
    if revision >= HEADS_REVISION:
        numbering = f"  {_bump_head(intent, 'xid')}\n    RETURNING last_seq, prev_txid INTO seq, prev;\n"
        prev_column, prev_value = ", prev_txid", ", prev"
    else:
        numbering = (f"  SELECT {_last_seq(intent, revision >= PRUNING_REVISION)} + 1 INTO seq"
                     f" FROM change_log WHERE intent_id = {intent};\n")
        prev_column = prev_value = ""
    return [
        f"""CREATE OR REPLACE FUNCTION fn_{table_name}_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  seq BIGINT;
  prev BIGINT;
  xid BIGINT := pg_current_xact_id()::text::bigint;
BEGIN
{lock}{numbering}  INSERT INTO change_log (entity, entity_id, op, intent_id, merchant_id, intent_seq, data, txid, created_at{prev_column})
  VALUES ('{entity}', NEW.id, lower(TG_OP), {intent}, NEW.merchant_id, seq,
          ({snapshot})::text, xid, NEW.updated_at{prev_value});
  PERFORM pg_notify('{NOTIFY_CHANNEL}', {intent});
  RETURN NULL;
END $$""",
        f"""CREATE TRIGGER trg_{table_name}_capture AFTER INSERT OR UPDATE ON {table_name}
FOR EACH ROW EXECUTE FUNCTION fn_{table_name}_capture()""",
    ]


# The history is append-only: no code path may rewrite it, and rows leave only through
# the pruning path (storage/history_prune.py, docs/history.md "Retention"): a DELETE is
# refused unless the row's id is at or below change_log_prune.through_id, which only the
# pruning transaction sets — and resets before it commits, so no other transaction ever
# sees it above 0.
_APPEND_ONLY_POSTGRES = [
    """CREATE OR REPLACE FUNCTION fn_change_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'change_log is append-only';
END $$""",
    """CREATE TRIGGER trg_change_log_append_only BEFORE UPDATE OR DELETE ON change_log
FOR EACH ROW EXECUTE FUNCTION fn_change_log_append_only()""",
]
_GUARDED_POSTGRES = [
    """CREATE OR REPLACE FUNCTION fn_change_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.id <= (SELECT through_id FROM change_log_prune WHERE id = 1) THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'change_log is append-only';
END $$""",
    """CREATE TRIGGER trg_change_log_append_only BEFORE UPDATE OR DELETE ON change_log
FOR EACH ROW EXECUTE FUNCTION fn_change_log_append_only()""",
    # TRUNCATE fires no row trigger.
    """CREATE TRIGGER trg_change_log_no_truncate BEFORE TRUNCATE ON change_log
FOR EACH STATEMENT EXECUTE FUNCTION fn_change_log_append_only()""",
]
_APPEND_ONLY_SQLITE = [f"""CREATE TRIGGER trg_change_log_no_{op.lower()} BEFORE {op} ON change_log
BEGIN SELECT RAISE(ABORT, 'change_log is append-only'); END""" for op in ("UPDATE", "DELETE")]
_GUARDED_SQLITE = [
    _APPEND_ONLY_SQLITE[0],
    """CREATE TRIGGER trg_change_log_no_delete BEFORE DELETE ON change_log
WHEN OLD.id > COALESCE((SELECT through_id FROM change_log_prune WHERE id = 1), 0)
BEGIN SELECT RAISE(ABORT, 'change_log is append-only'); END""",
]


def install_statements(dialect: str, columns: Mapping[str, Collection[str]] | None = None, *,
                       revision: int = HEADS_REVISION) -> list[str]:
    """The triggers' DDL. ``columns``: the captured tables' columns as they are in the
    database being migrated (SQLite names each column in its snapshot, and a migration
    runs before later ones add theirs); None: as the schema declares them. ``revision``:
    the migration building them — each gets the triggers of its time, for the tables the
    database has then (the pruning path's from 0006, the heads from 0011)."""
    postgres = dialect == "postgresql"
    build = _postgres_statements if postgres else _sqlite_statements
    pruning = revision >= PRUNING_REVISION
    if postgres:
        append_only = _GUARDED_POSTGRES if pruning else _APPEND_ONLY_POSTGRES
    else:
        append_only = _GUARDED_SQLITE if pruning else _APPEND_ONLY_SQLITE
    return [s for name, entity in CAPTURED_TABLES.items()
            for s in build(name, entity, None if columns is None else columns[name], revision)] + append_only


def live_columns(bind: Connection) -> dict[str, list[str]]:
    """The captured tables' columns as the database has them now (for a migration)."""
    inspector = inspect(bind)
    return {name: [c["name"] for c in inspector.get_columns(name)] for name in CAPTURED_TABLES}


@contextlib.contextmanager
def triggers_reinstalled(execute: Callable[[str], object], bind: Connection, revision: int) -> Iterator[None]:
    """Around a migration's change to a captured table: the triggers dropped, then built again
    over the columns the table has afterwards (SQLite's snapshot names each one), as of
    ``revision``. ``execute``: the migration's (``op.execute``)."""
    dialect = bind.dialect.name
    for statement in uninstall_statements(dialect):
        execute(statement)
    yield
    for statement in install_statements(dialect, live_columns(bind), revision=revision):
        execute(statement)


def uninstall_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [*(s for name in CAPTURED_TABLES for s in (f"DROP TRIGGER IF EXISTS trg_{name}_capture ON {name}",
                                                          f"DROP FUNCTION IF EXISTS fn_{name}_capture()")),
                "DROP TRIGGER IF EXISTS trg_change_log_append_only ON change_log",
                "DROP TRIGGER IF EXISTS trg_change_log_no_truncate ON change_log",
                "DROP FUNCTION IF EXISTS fn_change_log_append_only()"]
    return [*(f"DROP TRIGGER IF EXISTS trg_{name}_capture_{op}" for name in CAPTURED_TABLES for op in ("insert", "update")),
            *(f"DROP TRIGGER IF EXISTS trg_change_log_no_{op}" for op in ("update", "delete"))]
