"""Schema migrations (Alembic, driven programmatically). The start-up schema check, which
needs no Alembic, is :mod:`.schema_version`'s (re-exported here)."""
from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config

from paygate_server.storage.engine import Database
from paygate_server.storage.schema_version import (
    MIGRATIONS,
    SchemaMismatch,
    check_schema,
    current_revision,
    head_revision,
)

__all__ = ["alembic_config", "upgrade", "check_schema", "head_revision", "current_revision", "SchemaMismatch"]


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``revision``; returns (before, after)."""
    before = await current_revision(db)

    def run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
    await _sqlite_incremental_vacuum(db)
    return before, await current_revision(db)


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
