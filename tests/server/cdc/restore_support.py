"""A database backup and its restore, as an operator makes them (docs/operations.md, "Backups
and restore"): SQLite through ``sqlite3``'s online backup API (what ``sqlite3 … ".backup"``
runs), PostgreSQL with ``pg_dump -Fc`` and ``pg_restore`` into a fresh database. Both bring
back everything the database holds — sequences, ``sqlite_sequence``, relay offsets, heads —
as of the backup, which deleting the newest rows would not."""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.databases import drop_database, new_database_url

__all__ = ["backup", "restored"]


def _sqlite_path(url: str) -> str:
    return str(make_url(url).database)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def backup(url: str, directory: Path) -> Path:
    """A backup of the database at ``url``, taken while it may be in use."""
    if url.startswith("sqlite"):
        target = directory / "backup.db"
        with contextlib.closing(sqlite3.connect(_sqlite_path(url))) as src, \
                contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)
        return target
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    target = directory / "backup.dump"
    subprocess.run(["pg_dump", "-Fc", "-f", str(target), _libpq(url)], check=True, capture_output=True)
    return target


@contextlib.asynccontextmanager
async def restored(backup_file: Path, like: str, directory: Path) -> AsyncIterator[str]:
    """The backup restored into a new database on the backend of ``like`` (its URL), dropped
    at the end. (The helpers it calls run their own event loops: here, in a thread.)"""
    url = await asyncio.to_thread(new_database_url, "sqlite" if like.startswith("sqlite") else "postgresql",
                                  directory)
    try:
        if url.startswith("sqlite"):
            with contextlib.closing(sqlite3.connect(backup_file)) as src, \
                    contextlib.closing(sqlite3.connect(_sqlite_path(url))) as dst:
                src.backup(dst)
        else:
            subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", _libpq(url), str(backup_file)],
                           check=True, capture_output=True)
        yield url
    finally:
        await asyncio.to_thread(drop_database, url)
