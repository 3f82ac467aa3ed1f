"""The start-up schema check, without Alembic.

Every command and every server start checks that the database is at this code's revision;
only ``paygate db upgrade`` (and the tests' templates) migrate. Importing Alembic and loading
its migration scripts costs about as much as the rest of a command's start-up, so the check
reads the revision table itself and the revisions from the migration files' text (the lines
Alembic's template writes: ``revision = "0019"``, ``down_revision = "0018"``).
tests/server/test_schema.py holds this reading to Alembic's own.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paygate_server.storage.engine import Database

__all__ = ["SchemaMismatch", "check_schema", "current_revision", "head_revision", "known_revisions",
           "read_revision", "VERSION_TABLE"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps

# ``revision = "0019"`` (or annotated, ``revision: str = "0019"``); ``down_revision`` is
# one revision or None (the history is one line: no merges, no branches).
_REVISION = re.compile(r"""^revision(?:\s*:[^=\n]+)?\s*=\s*["']([^"']+)["']""", re.M)
_DOWN = re.compile(r"""^down_revision(?:\s*:[^=\n]+)?\s*=\s*(?:None|["']([^"']+)["'])""", re.M)


class SchemaMismatch(RuntimeError):
    """The database schema is not the one this code was written for."""


@cache
def _revisions() -> dict[str, str | None]:
    """Every revision of the migration scripts, with the one it follows."""
    found: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        text = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(text), _DOWN.search(text)
        if revision is None:
            continue  # (__init__.py)
        if down is None:
            raise RuntimeError(f"migration {script.name} names no down_revision")
        found[revision.group(1)] = down.group(1)
    return found


def known_revisions() -> frozenset[str]:
    return frozenset(_revisions())


def head_revision() -> str:
    """The revision no other follows (the scripts form one line, so there is one)."""
    revisions = _revisions()
    heads = set(revisions) - set(revisions.values())
    if len(heads) != 1:
        raise RuntimeError(f"the migration scripts have {len(heads)} heads, not one: {sorted(heads)}")
    return heads.pop()


def read_revision(sync_conn: Any) -> str | None:
    # Alembic's own reading (MigrationContext.get_current_revision): no table, no revision.
    from sqlalchemy import inspect, text

    if not inspect(sync_conn).has_table(VERSION_TABLE):
        return None
    rows = sync_conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise SchemaMismatch(f"the database records {len(rows)} schema revisions at once ({', '.join(sorted(rows))}): "
                             "it was not migrated by this paygate")
    return rows[0] if rows else None


async def current_revision(db: Database) -> str | None:
    async with db.raw_connection() as conn:
        return await conn.run_sync(read_revision)


async def check_schema(db: Database) -> None:
    """Refuse to run on an unmigrated, older, or newer-than-code schema."""
    current = await current_revision(db)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatch("the database has no paygate schema yet: run `paygate db upgrade` first")
    if current not in known_revisions():
        raise SchemaMismatch(f"the database schema is at revision {current}, which is newer than this code "
                             f"(it knows up to {head}): upgrade paygate before starting it on this database")
    raise SchemaMismatch(f"the database schema is at revision {current} but this code needs {head}: "
                         "run `paygate db upgrade`")
