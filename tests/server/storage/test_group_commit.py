"""SQLite group commit: units share a commit, a failing unit rolls back only itself."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paygate_server.storage import create_database
from paygate_server.storage.migrate import upgrade
from paygate_server.storage.statements import Sql, execute, fetch_all

_INSERT = Sql("INSERT INTO merchants (id, name, created_at) VALUES (:id, :name, 1)")


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/group.db"
    db = create_database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()
    return url


async def test_concurrent_units_share_commits_and_fail_alone(sqlite_url: str) -> None:
    db = create_database(sqlite_url)
    try:
        async def unit(i: int) -> None:
            async with db.write() as conn:
                await execute(conn, _INSERT, id=f"mer_{i:03d}", name="first")
                if i % 10 == 3:
                    raise ValueError("this unit fails after writing")
                await execute(conn, Sql("UPDATE merchants SET name = 'second' WHERE id = :id"), id=f"mer_{i:03d}")

        results = await asyncio.gather(*(unit(i) for i in range(100)), return_exceptions=True)
        failed = {i for i, r in enumerate(results) if isinstance(r, ValueError)}
        assert failed == {i for i in range(100) if i % 10 == 3}
        assert db._group is not None and db._group.batches < 50  # shared, not one commit each
    finally:
        await db.dispose()
    # What returned is durable: a new process (a new engine) sees exactly the good units, whole.
    other = create_database(sqlite_url)
    try:
        async with other.read() as conn:
            rows = await fetch_all(conn, Sql("SELECT id, name FROM merchants ORDER BY id"))
        assert [(r["id"], r["name"]) for r in rows] == [(f"mer_{i:03d}", "second") for i in range(100) if i not in failed]
    finally:
        await other.dispose()
