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

from collections.abc import Collection, Mapping

from sqlalchemy import Connection, Table, inspect

from paygate_server.storage.schema import CAPTURED_TABLES, metadata

__all__ = ["install_statements", "live_columns", "uninstall_statements", "SNAPSHOT_EXCLUDED", "NOTIFY_CHANNEL"]

NOTIFY_CHANNEL = "paygate_changes"

# Columns never copied into the history.
SNAPSHOT_EXCLUDED = {"client_secret_hash", "vault_id", "card_fingerprint"}


def _intent_id_expr(table_name: str) -> str:
    return "NEW.id" if table_name == "payment_intents" else "NEW.intent_id"


def _snapshot_columns(table: Table, present: Collection[str] | None) -> list[str]:
    return [c.name for c in table.columns
            if c.name not in SNAPSHOT_EXCLUDED and (present is None or c.name in present)]


def _sqlite_statements(table_name: str, entity: str, present: Collection[str] | None) -> list[str]:
    table = metadata.tables[table_name]
    pairs = ", ".join(f"'{c}', NEW.{c}" for c in _snapshot_columns(table, present))
    intent = _intent_id_expr(table_name)
    return [f"""CREATE TRIGGER trg_{table_name}_capture_{op} AFTER {op.upper()} ON {table_name}
FOR EACH ROW BEGIN
  INSERT INTO change_log (entity, entity_id, op, intent_id, merchant_id, intent_seq, data, txid, created_at)
  VALUES ('{entity}', NEW.id, '{op}', {intent}, NEW.merchant_id,
          (SELECT COALESCE(MAX(intent_seq), 0) + 1 FROM change_log WHERE intent_id = {intent}),
          json_object({pairs}), NULL, NEW.updated_at);
END""" for op in ("insert", "update")]


def _postgres_statements(table_name: str, entity: str, _present: Collection[str] | None) -> list[str]:
    table = metadata.tables[table_name]
    excluded = " - ".join(f"'{c}'" for c in SNAPSHOT_EXCLUDED if c in table.columns)
    snapshot = f"to_jsonb(NEW) - {excluded}" if excluded else "to_jsonb(NEW)"
    intent = _intent_id_expr(table_name)
    lock = (
        ""
        if table_name == "payment_intents"
        # Serialize all changes of one intent behind its row lock, always taken first,
        # so intent_seq is gap-free and ordered without deadlocks.
        else f"  PERFORM 1 FROM payment_intents WHERE id = {intent} FOR UPDATE;\n"
    )
    return [
        f"""CREATE OR REPLACE FUNCTION fn_{table_name}_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  seq BIGINT;
BEGIN
{lock}  SELECT COALESCE(MAX(intent_seq), 0) + 1 INTO seq FROM change_log WHERE intent_id = {intent};
  INSERT INTO change_log (entity, entity_id, op, intent_id, merchant_id, intent_seq, data, txid, created_at)
  VALUES ('{entity}', NEW.id, lower(TG_OP), {intent}, NEW.merchant_id, seq,
          ({snapshot})::text, pg_current_xact_id()::text::bigint, NEW.updated_at);
  PERFORM pg_notify('{NOTIFY_CHANNEL}', {intent});
  RETURN NULL;
END $$""",
        f"""CREATE TRIGGER trg_{table_name}_capture AFTER INSERT OR UPDATE ON {table_name}
FOR EACH ROW EXECUTE FUNCTION fn_{table_name}_capture()""",
    ]


# The history is append-only: no code path may rewrite or delete it.
_APPEND_ONLY_POSTGRES = [
    """CREATE OR REPLACE FUNCTION fn_change_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'change_log is append-only';
END $$""",
    """CREATE TRIGGER trg_change_log_append_only BEFORE UPDATE OR DELETE ON change_log
FOR EACH ROW EXECUTE FUNCTION fn_change_log_append_only()""",
]
_APPEND_ONLY_SQLITE = [f"""CREATE TRIGGER trg_change_log_no_{op.lower()} BEFORE {op} ON change_log
BEGIN SELECT RAISE(ABORT, 'change_log is append-only'); END""" for op in ("UPDATE", "DELETE")]


def install_statements(dialect: str, columns: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """The triggers' DDL. ``columns``: the captured tables' columns as they are in the
    database being migrated (SQLite names each column in its snapshot, and a migration
    runs before later ones add theirs); None: as the schema declares them."""
    build, append_only = ((_postgres_statements, _APPEND_ONLY_POSTGRES) if dialect == "postgresql"
                          else (_sqlite_statements, _APPEND_ONLY_SQLITE))
    return [s for name, entity in CAPTURED_TABLES.items()
            for s in build(name, entity, None if columns is None else columns[name])] + append_only


def live_columns(bind: Connection) -> dict[str, list[str]]:
    """The captured tables' columns as the database has them now (for a migration)."""
    inspector = inspect(bind)
    return {name: [c["name"] for c in inspector.get_columns(name)] for name in CAPTURED_TABLES}


def uninstall_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [*(s for name in CAPTURED_TABLES for s in (f"DROP TRIGGER IF EXISTS trg_{name}_capture ON {name}",
                                                          f"DROP FUNCTION IF EXISTS fn_{name}_capture()")),
                "DROP TRIGGER IF EXISTS trg_change_log_append_only ON change_log",
                "DROP FUNCTION IF EXISTS fn_change_log_append_only()"]
    return [*(f"DROP TRIGGER IF EXISTS trg_{name}_capture_{op}" for name in CAPTURED_TABLES for op in ("insert", "update")),
            *(f"DROP TRIGGER IF EXISTS trg_change_log_no_{op}" for op in ("update", "delete"))]
