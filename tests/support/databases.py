"""Fresh, migrated databases for tests: SQLite files and PostgreSQL databases.

PostgreSQL tests need ``PAYGATE_TEST_DATABASE_URL`` (a database on a server where the
user may CREATE DATABASE); each test session makes its own databases next to it and drops
them at the end, so parallel workers never share state.

A migrated database is a copy of one migrated per backend per test process (the template):
running the migrations takes about a second, and the suite asks for over 400 of them. A
PostgreSQL copy is ``CREATE DATABASE … TEMPLATE``, a SQLite one SQLite's online backup. The
template is only ever copied, never opened by a gateway, so every copy is what the
migrations alone make. :func:`drop_templates` drops them at the end of the session.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from paygate_server.storage import Database, create_database, upgrade
from paygate_server.storage.sqlite_copy import copy_committed

__all__ = ["BACKENDS", "another_database", "backend_of", "copy_of_database", "drop_database", "drop_templates",
           "migrate", "migrated_database_url", "new_database_url", "opened_database", "pg_base_url"]

BACKENDS = ["sqlite", "postgresql"]
PG_ENV = "PAYGATE_TEST_DATABASE_URL"


def pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://127.0.0.1:5432/test); .ci/run sets it")
    return url


async def _pg_admin(sql: str) -> None:
    url = make_url(pg_base_url())
    conn = await asyncpg.connect(user=url.username, password=url.password, host=url.host or "127.0.0.1",
                                 port=url.port or 5432, database=url.database)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def backend_of(url: str) -> str:
    """The name in :data:`BACKENDS` of the database at ``url``."""
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def new_database_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / f'paygate-{uuid.uuid4().hex[:8]}.db'}"
    name = f"paygate_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return make_url(pg_base_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    if url.startswith("postgres"):
        name = make_url(url).database
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_templates: dict[str, str] = {}  # backend → this process's migrated template
_template_dir: list[Path] = []  # where the SQLite template lives (made on first use)


def _template(backend: str) -> str:
    if backend not in _templates:
        if not _template_dir:
            _template_dir.append(Path(tempfile.mkdtemp(prefix="paygate-template-")))
        url = new_database_url(backend, _template_dir[0])
        migrate(url)
        _templates[backend] = url
    return _templates[backend]


def migrated_database_url(backend: str, directory: Path) -> str:
    """A new database migrated to the newest schema (a copy of the template): the caller
    drops it with :func:`drop_database`."""
    return copy_of_database(_template(backend), directory)


def copy_of_database(template: str, directory: Path) -> str:
    """A new database holding what ``template`` holds (a SQLite file's committed state, or
    PostgreSQL's ``CREATE DATABASE … TEMPLATE``, which fails while any connection is open
    on the template: close its pools first). The caller drops it with :func:`drop_database`."""
    if template.startswith("sqlite"):
        url = new_database_url("sqlite", directory)
        copy_committed(Path(make_url(template).database or ""), Path(make_url(url).database or ""))
        return url
    name = f"paygate_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template).database}"'))
    return make_url(pg_base_url()).set(database=name).render_as_string(hide_password=False)


def drop_templates() -> None:
    """Drop this process's templates (the end of a test session)."""
    for url in _templates.values():
        drop_database(url)
    _templates.clear()
    for directory in _template_dir:
        shutil.rmtree(directory, ignore_errors=True)
    _template_dir.clear()


@contextlib.contextmanager
def another_database(like: str, directory: Path, *, migrated: bool = True) -> Iterator[str]:
    """A brand-new database on the backend of the database ``like`` (migrated unless told
    not to), dropped at the end."""
    backend = backend_of(like)
    url = migrated_database_url(backend, directory) if migrated else new_database_url(backend, directory)
    try:
        yield url
    finally:
        drop_database(url)


def migrate(url: str) -> None:
    async def run() -> None:
        db = create_database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(run())


@contextlib.asynccontextmanager
async def opened_database(url: str) -> AsyncIterator[Database]:
    """A handle on an existing database, disposed at the end (the ``db`` fixtures of the
    change-history and console tests: one place that opens and closes their pools)."""
    database = create_database(url)
    try:
        yield database
    finally:
        await database.dispose()
