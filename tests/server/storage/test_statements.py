"""Hand-written statements on the driver: same transaction as SQLAlchemy, same errors."""
from __future__ import annotations

import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from paygate_server.storage import Database, create_database
from paygate_server.storage.statements import Sql, execute, fetch_all, fetch_one, fetch_value
from tests.support.eventually import eventually

_INSERT = Sql("INSERT INTO merchants (id, name, created_at) VALUES (:id, :name, :at)")
_GET = Sql("SELECT id, name, created_at FROM merchants WHERE id = :id")
_RENAME = Sql("UPDATE merchants SET name = :name WHERE id = :id OR id = :id || '-other'")


def test_named_parameters_become_numbered_once_per_name() -> None:
    sql = Sql("SELECT :a, :b::text, :a, 'x:y', ':c' FROM t WHERE z = :b")
    assert sql.names == ("a", "b", "c")
    # ':c' inside a literal is still counted: statements here never put parameters in quotes.
    assert sql.positional == "SELECT $1, $2::text, $1, 'x:y', '$3' FROM t WHERE z = $2"
    assert sql.args({"a": 1, "b": 2, "c": 3}) == [1, 2, 3]


def test_a_missing_or_unexpected_parameter_is_refused() -> None:
    sql = Sql("SELECT :a, :b")
    with pytest.raises(TypeError, match=r"missing \['b'\], unexpected \['c'\]"):
        sql.args({"a": 1, "c": 3})


async def test_statements_share_the_unit_of_work(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            assert await execute(conn, _INSERT, id="mer_a", name="A", at=1) == 1
            # SQLAlchemy sees the driver's uncommitted write, and the driver sees SQLAlchemy's.
            assert (await conn.execute(text("SELECT name FROM merchants WHERE id = 'mer_a'"))).scalar() == "A"
            await conn.execute(text("INSERT INTO merchants (id, name, created_at) VALUES ('mer_b', 'B', 2)"))
            row = await fetch_one(conn, _GET, id="mer_b")
            assert row is not None and (row["id"], row["name"], row["created_at"]) == ("mer_b", "B", 2)
            assert await execute(conn, _RENAME, id="mer_a", name="A2") == 1
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_c", name="C", at=3)
                raise RuntimeError("roll the unit back")
        async with db.read() as conn:
            rows = await fetch_all(conn, Sql("SELECT id, name FROM merchants ORDER BY id"))
            assert [(r["id"], r["name"]) for r in rows] == [("mer_a", "A2"), ("mer_b", "B")]
            assert await fetch_value(conn, _GET, id="mer_a") == "mer_a"
            assert await fetch_one(conn, _GET, id="mer_c") is None
    finally:
        await db.dispose()


async def test_a_unique_violation_is_sqlalchemys_integrity_error_and_rolls_back(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write() as conn:
            await execute(conn, _INSERT, id="mer_a", name="A", at=1)
        with pytest.raises(IntegrityError):
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_b", name="B", at=2)
                await execute(conn, _INSERT, id="mer_a", name="again", at=3)
        async with db.read() as conn:
            assert [r["id"] for r in await fetch_all(conn, Sql("SELECT id FROM merchants"))] == ["mer_a"]
        # The pooled connection is healthy afterwards: no transaction was left open on it.
        for _ in range(3):
            async with db.write() as conn:
                assert await execute(conn, _RENAME, id="mer_a", name="ok") == 1
    finally:
        await db.dispose()


async def test_single_statement_writes_commit_on_their_own(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        async with db.write_one() as conn:
            assert await execute(conn, _INSERT, id="mer_a", name="A", at=1) == 1
        async with db.read() as conn:
            assert await fetch_value(conn, Sql("SELECT name FROM merchants WHERE id = :id"), id="mer_a") == "A"
    finally:
        await db.dispose()


async def test_autocommit_connections_commit_each_statement_and_survive_errors(fresh_database_url: str) -> None:
    db = create_database(fresh_database_url)
    try:
        if db.is_sqlite:
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_a", name="A", at=1)
        else:
            async with db.autocommit() as conn:
                assert await execute(conn, _INSERT, id="mer_a", name="A", at=1) == 1
                with pytest.raises(IntegrityError):
                    await execute(conn, _INSERT, id="mer_a", name="again", at=2)
                # No transaction was left aborted: the same connection goes on working.
                assert await execute(conn, _RENAME, id="mer_a", name="A2") == 1
        for _ in range(3):  # pooled connections come back clean
            async with db.read_one() as conn:
                row = await fetch_one(conn, _GET, id="mer_a")
                assert row is not None and row["name"] == ("A" if db.is_sqlite else "A2")
        # A writer's commit is visible to the next read_one at once (no snapshot held).
        async with db.write() as conn:
            await execute(conn, _RENAME, id="mer_a", name="B")
        async with db.read_one() as conn:
            assert await fetch_value(conn, Sql("SELECT name FROM merchants WHERE id = :id"), id="mer_a") == "B"
    finally:
        await db.dispose()


async def test_autocommit_check_in_past_the_pool_size_closes_cleanly(
        fresh_database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # pool_size=2 with one overflow connection: the third is closed when it comes back —
    # async I/O that must run inside SQLAlchemy's greenlet bridge.
    import asyncio
    import logging

    db = create_database(fresh_database_url, pool_size=2, max_overflow=1)
    release = asyncio.Event()

    async def hold() -> int:
        async with db.read_one() as conn:
            value = await fetch_value(conn, Sql("SELECT 1 AS one"))
            await release.wait()
            return int(value)

    try:
        with caplog.at_level(logging.ERROR, logger="sqlalchemy"):
            holders = [asyncio.create_task(hold()) for _ in range(3)]
            await eventually(lambda: db.engine.sync_engine.pool.checkedout() >= 3, what="3 connections held")
            release.set()
            assert await asyncio.gather(*holders) == [1, 1, 1]
        assert db.engine.sync_engine.pool.checkedout() == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        async with db.read_one() as conn:  # and the pool still serves
            assert await fetch_value(conn, Sql("SELECT 2 AS two")) == 2
    finally:
        await db.dispose()


async def _read_together(db: Database, sql: Sql, *, readers: int, held: int) -> list[int]:
    """``readers`` single reads at once, each holding its pooled connection until ``held``
    connections are checked out together; their values, in order."""
    import asyncio

    gate = asyncio.Event()

    async def read() -> int:
        async with db.read_one() as conn:
            await gate.wait()
            return int(await fetch_value(conn, sql))

    tasks = [asyncio.create_task(read()) for _ in range(readers)]
    await eventually(lambda: db.engine.sync_engine.pool.checkedout() >= held, interval=0.005,
                     what=f"{held} pooled connections held")
    gate.set()
    return list(await asyncio.gather(*tasks))


async def test_a_burst_past_the_pool_size_waits_instead_of_opening_connections(database_url: str) -> None:
    """PostgreSQL: the pool's ceiling is fixed. A burst of 4× the pool size is served by the
    pool's own connections, kept and reused, instead of overflow connections that would be
    closed on return (a backend fork each, every time the load bursts)."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: SQLite connections are files, not server processes")

    from sqlalchemy import event

    db = create_database(database_url, pool_size=3)
    opened = 0

    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(db.engine.sync_engine.pool, "connect", count)
    try:
        for _ in range(3):
            assert await _read_together(db, Sql("SELECT 1 AS one"), readers=12, held=3) == [1] * 12
        assert opened == 3
        assert db.engine.sync_engine.pool.checkedout() == 0
    finally:
        await db.dispose()


@pytest.mark.parametrize("pool_size", [3, 8], ids=["none-kept", "two-kept"])
async def test_a_dead_connection_retires_every_older_pooled_one(database_url: str, pool_size: int) -> None:
    """PostgreSQL: the server killed every backend of the pool (a restart, say). The first
    statement to meet one fails; each later checkout is handed a new connection, not one of
    the other dead ones (FIFO pool: without the fence, the next ones would fail too) — nor
    one of those kept between single statements (a pool of 8 keeps 2)."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: SQLite connections are files, not server processes")

    import asyncpg
    from sqlalchemy.engine import make_url

    from paygate_server.storage.availability import is_database_unavailable

    db = create_database(database_url, pool_size=pool_size)
    try:
        pids = await _read_together(db, Sql("SELECT pg_backend_pid() AS pid"), readers=pool_size, held=pool_size)
        assert db.engine.sync_engine.pool.checkedout() == pool_size // 4  # the kept ones
        url = make_url(database_url)
        admin = await asyncpg.connect(host=url.host, port=url.port, user=url.username, database=url.database)
        try:
            assert await admin.fetchval("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM "
                                        "pg_stat_activity WHERE pid = any($1::int[])) t", pids) == pool_size
            await eventually(lambda: admin.fetchval("SELECT count(*) FROM pg_stat_activity "
                                                    "WHERE pid = any($1::int[])", pids),
                             until=lambda alive: alive == 0, what="the backends to be gone")
        finally:
            await admin.close()
        with pytest.raises(Exception) as caught:
            async with db.read_one() as conn:
                await fetch_value(conn, Sql("SELECT 1 AS one"))
        assert is_database_unavailable(caught.value)
        for _ in range(pool_size):
            async with db.read_one() as conn:
                assert await fetch_value(conn, Sql("SELECT pg_backend_pid() AS pid")) not in pids
    finally:
        await db.dispose()


async def test_single_statements_keep_a_quarter_of_the_pool_between_them(database_url: str) -> None:
    """autocommit() keeps the connection of a block that ended well for the next block, up
    to a quarter of the pool; the rest goes back to the pool. A block that raised gives its
    connection back, and dispose() closes the kept ones."""
    db = create_database(database_url, pool_size=8)
    pool = db.engine.sync_engine.pool
    one = Sql("SELECT 1 AS one")
    try:
        async with db.read_one() as conn:
            first = conn.driver
            assert await fetch_value(conn, one) == 1
        assert pool.checkedout() == 1  # kept, not checked in
        async with db.read_one() as conn:
            assert conn.driver is first  # the kept one, not a checkout
            assert await fetch_value(conn, one) == 1
        assert await _read_together(db, one, readers=16, held=8) == [1] * 16
        assert pool.checkedout() == 2  # 8 // 4 kept; the other six went back
        with pytest.raises(RuntimeError):
            async with db.read_one() as conn:
                raise RuntimeError("the block failed")
        assert pool.checkedout() == 1  # the failed block's connection went back to the pool
        async with db.read_one() as conn:
            with pytest.raises(IntegrityError):  # caught inside the block: the block ends well
                await execute(conn, _INSERT, id="mer_a", name="A", at=1)
                await execute(conn, _INSERT, id="mer_a", name="A", at=1)
        assert pool.checkedout() == 1
    finally:
        await db.dispose()
    assert pool.checkedout() == 0



async def test_single_statement_blocks_start_no_async_generator(fresh_database_url: str) -> None:
    """read_one, write_one and autocommit are plain context managers: a payment runs ~17 of
    these blocks, and an @asynccontextmanager costs each a generator, asyncio's hooks and ~10
    Python calls (docs/perf/history.md, "Autocommit blocks without generators"). On SQLite
    write_one is the group commit's unit, which is one."""
    db = create_database(fresh_database_url)
    started: list[object] = []
    hooks = sys.get_asyncgen_hooks()
    try:
        async with db.write() as conn:
            await execute(conn, _INSERT, id="mer_a", name="A", at=1)
        sys.set_asyncgen_hooks(firstiter=lambda agen: (started.append(agen), hooks.firstiter(agen)),
                               finalizer=hooks.finalizer)
        async with db.read_one() as conn:
            assert await fetch_value(conn, _GET, id="mer_a") == "mer_a"
        async with db.autocommit() as conn:
            assert await fetch_value(conn, _GET, id="mer_a") == "mer_a"
        assert started == []
        if not db.is_sqlite:
            async with db.write_one() as conn:
                assert await execute(conn, _RENAME, id="mer_a", name="A2") == 1
            assert started == []
    finally:
        sys.set_asyncgen_hooks(*hooks)
        await db.dispose()


async def test_a_write_block_starts_one_async_generator_not_two(fresh_database_url: str) -> None:
    """Database.write() hands back the group commit's unit (SQLite) or the engine's begin()
    (PostgreSQL), each one async generator, without one of its own around it
    (docs/perf/history.md, "Starlette's inner layers")."""
    db = create_database(fresh_database_url)
    started: list[object] = []
    hooks = sys.get_asyncgen_hooks()
    try:
        sys.set_asyncgen_hooks(firstiter=lambda agen: (started.append(agen), hooks.firstiter(agen)),
                               finalizer=hooks.finalizer)
        async with db.write() as conn:
            await execute(conn, _INSERT, id="mer_a", name="A", at=1)
        assert len(started) == 1
        async with db.read_one() as conn:
            assert await fetch_value(conn, _GET, id="mer_a") == "mer_a"  # the write committed
    finally:
        sys.set_asyncgen_hooks(*hooks)
        await db.dispose()
