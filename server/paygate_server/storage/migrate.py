"""Schema migrations (Alembic, driven programmatically). The start-up schema check, which
needs no Alembic, is :mod:`.schema_version`'s (re-exported here)."""
from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from paygate_server.storage.engine import Database
from paygate_server.storage.schema_version import (
    MIGRATIONS,
    SchemaMismatch,
    check_schema,
    current_revision,
    head_revision,
    read_revision,
)

__all__ = ["alembic_config", "upgrade", "check_schema", "head_revision", "current_revision", "SchemaMismatch"]


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# One migration at a time. Several hosts (or init containers) running `paygate db upgrade`
# at once each read "no schema" and raced to create the same tables: all but one ended in a
# traceback ("database is locked" on SQLite, a duplicate key in PostgreSQL's catalog). Now
# each waits for the one before it (PostgreSQL: this transaction-scoped advisory lock;
# SQLite: the write lock taken up front, waited for up to the busy timeout) and reads the
# revision only then, so the others find the schema current.
_MIGRATION_LOCK = 7_342_002  # (relay_leases' locks are class 7_342_001)


async def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``revision``; returns (before, after)."""
    before: list[str | None] = []

    def run(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _MIGRATION_LOCK})
        before.append(read_revision(sync_conn))
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        # Every revision of a run commits at once, and code older than the schema refuses
        # to start (schema_version.check_schema): on a database this run creates, no older
        # worker can ever write (migration 0019 reads this).
        cfg.attributes["created_by_this_run"] = before[0] is None
        command.upgrade(cfg, revision)

    engine = db.engine.execution_options(sqlite_begin="IMMEDIATE") if db.is_sqlite else db.engine
    async with engine.begin() as conn:
        await conn.run_sync(run)
    await _sqlite_incremental_vacuum(db)
    return before[0], await current_revision(db)


async def _sqlite_incremental_vacuum(db: Database) -> None:
    """SQLite: ``auto_vacuum=INCREMENTAL``, so the pages pruning frees can be handed back
    (``PRAGMA incremental_vacuum``). An existing file switches only through a VACUUM, which
    rewrites it (once; it takes as long as copying the file) and cannot run in a
    transaction — hence here, after the migrations' transaction."""
    if not db.is_sqlite:
        return
    raw = await db.engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        async with driver.execute("PRAGMA auto_vacuum") as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] != 2:  # 2: INCREMENTAL
            await driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
            await driver.execute("VACUUM")
    finally:
        raw.close()
