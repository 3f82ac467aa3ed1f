"""Schema migrations (Alembic, driven programmatically) and the start-up schema check."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from paygate_server.storage.engine import Database

__all__ = ["upgrade", "check_schema", "head_revision", "current_revision", "SchemaMismatch"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaMismatch(RuntimeError):
    """The database schema is not the one this code was written for."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


# The migrations are the installed code's and do not change while it runs: every start-up
# checks the schema, and Alembic compiles every script to read them, so once per process.
@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    return {s.revision for s in _scripts().walk_revisions()}


async def current_revision(db: Database) -> str | None:
    async with db.raw_connection() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate to ``revision``; returns (before, after)."""
    before = await current_revision(db)

    def run(sync_conn: Any) -> None:
        cfg = _config()
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


async def check_schema(db: Database) -> None:
    """Refuse to run on an unmigrated, older, or newer-than-code schema."""
    current = await current_revision(db)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch("the database has no paygate schema yet: run `paygate db upgrade` first")
    if current not in _known_revisions():
        raise SchemaMismatch(f"the database schema is at revision {current}, which is newer than this code "
                             f"(it knows up to {head}): upgrade paygate before starting it on this database")
    raise SchemaMismatch(f"the database schema is at revision {current} but this code needs {head}: "
                         "run `paygate db upgrade`")
