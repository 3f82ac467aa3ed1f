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


async def test_a_unit_that_breaks_the_connection_loses_its_batch_and_nobody_hangs(sqlite_url: str) -> None:
    """A unit that leaves the connection unusable (as a cancellation inside a SQLAlchemy
    statement does: not even its rollback runs) fails every unit of its batch, instead of
    leaving them waiting for a commit that never comes; the next unit gets a new batch."""
    from paygate_server.storage.group_commit import BatchLost
    from tests.support.eventually import eventually

    db = create_database(sqlite_url)
    group = db._group
    assert group is not None
    group.max_age_s = 60.0  # the batch stays open while the test arranges its units
    try:
        first_written = asyncio.Event()

        async def first() -> None:  # writes, then waits for the batch's commit
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_first", name="first")
                first_written.set()
                await eventually(lambda: group._waiting == 1, what="the breaking unit queued")

        breaking_in = asyncio.Event()

        async def breaking() -> None:
            await first_written.wait()
            async with db.write() as conn:
                breaking_in.set()
                await eventually(lambda: group._waiting == 1, what="the third unit queued")
                await conn.invalidate()  # the connection is gone: the savepoint rollback fails
                raise RuntimeError("the unit's own failure")

        async def third() -> None:  # queued behind the breaking unit: a new batch
            await breaking_in.wait()
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_after", name="after")

        results = await asyncio.wait_for(asyncio.gather(first(), breaking(), third(), return_exceptions=True), 10)
        assert isinstance(results[0], BatchLost) and isinstance(results[1], RuntimeError), results
        assert results[2] is None, results
        async with db.read() as conn:
            names = [r["id"] for r in await fetch_all(conn, Sql("SELECT id FROM merchants ORDER BY id"))]
        assert names == ["mer_after"]  # the lost batch wrote nothing
    finally:
        await db.dispose()
