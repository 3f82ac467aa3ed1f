"""SQLite group commit: units share a commit, a failing or cancelled unit rolls back only
itself, and a batch lost with its connection wrote nothing and answers 503."""
from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.storage import Database, create_database
from paygate_server.storage.availability import RETRY_AFTER_S, is_database_unavailable
from paygate_server.storage.migrate import upgrade
from paygate_server.storage.statements import Sql, execute, fetch_all, fetch_tuples, fetch_value
from tests.support.eventually import eventually

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


def _threaded_database(url: str) -> Database:
    """The database on aiosqlite's own connections, every statement on the connection's
    thread: a statement can then still run when its task is cancelled. (The gateway's run a
    unit's statements on the loop's thread, where that cannot happen, but the committer
    makes no assumption about its driver.)"""
    path = make_url(url).database
    assert path is not None
    return create_database(url, async_creator=lambda: aiosqlite.connect(path))


async def _ids(url: str) -> list[str]:
    """What a new process (a new engine) finds written."""
    other = create_database(url)
    try:
        async with other.read() as conn:
            return [r["id"] for r in await fetch_all(conn, Sql("SELECT id FROM merchants ORDER BY id"))]
    finally:
        await other.dispose()


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
        # An outage, not a bug: the HTTP layer answers 503 with Retry-After (SPEC §2) ...
        assert is_database_unavailable(results[0])
        # ... and the lost batch wrote nothing, as a new process sees: retrying is safe.
        assert await _ids(sqlite_url) == ["mer_after"]
        async with db.write() as conn:  # the retry
            await execute(conn, _INSERT, id="mer_first", name="first")
    finally:
        await db.dispose()
    assert await _ids(sqlite_url) == ["mer_after", "mer_first"]


async def test_a_lost_batch_answers_503_with_retry_after() -> None:
    from paygate_server.http.middleware import RequestIdMiddleware
    from paygate_server.storage.group_commit import BatchLost

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise BatchLost("the write batch was lost with its connection: OperationalError('disk I/O error')")

    transport = httpx.ASGITransport(app=RequestIdMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        r = await client.post("/v1/payment_intents")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "service_unavailable"
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)


# --- a cancelled unit is undone alone: the other units of its batch still commit ----------

class _Block:
    """A SQL function that holds the connection's thread until released: a statement that
    is still running when its task is cancelled (no timing involved: the test releases it)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> int:
        self.entered.set()
        self.released.wait(10)
        return 1

    async def install(self, conn: AsyncConnection) -> None:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.create_function("paygate_block", 0, self)  # type: ignore[union-attr]

    async def cancel_inside(self, task: asyncio.Task[Any], times: int = 1) -> None:
        """Cancel ``task`` (``times`` times) while the blocking statement runs, then let it end."""
        assert self.entered.is_set() and not self.released.is_set() and not task.done()
        for _ in range(times):
            task.cancel()
            await asyncio.sleep(0)  # each cancellation delivered before the next one
        self.released.set()


async def _block_through_sqlalchemy(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT paygate_block()"))


async def _block_on_the_driver(conn: AsyncConnection) -> None:
    await fetch_all(conn, Sql("SELECT paygate_block() AS b"))


@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("block", [_block_through_sqlalchemy, _block_on_the_driver])
async def test_a_unit_cancelled_inside_a_statement_is_undone_alone(
        sqlite_url: str, block: Callable[[AsyncConnection], Awaitable[None]], times: int) -> None:
    """Cancelled while its statement runs (shutdown, an ``asyncio.timeout``, a client gone),
    once or twice: that unit is rolled back and its caller hears CancelledError; the unit
    before it in the batch, which had finished and waits for the commit, is written; the
    unit queued behind it starts only once it is undone."""
    db = _threaded_database(sqlite_url)
    group = db._group
    assert group is not None
    group.max_age_s = 60.0  # one batch for the three units
    blocker = _Block()
    try:
        first_written = asyncio.Event()

        async def first() -> None:
            async with db.write() as conn:
                await blocker.install(conn)
                await execute(conn, _INSERT, id="mer_first", name="first")
                first_written.set()
                await eventually(lambda: group._waiting == 1, what="the cancelled unit queued")

        async def cancelled() -> None:
            await first_written.wait()
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_cancelled", name="cancelled")
                await block(conn)
                await execute(conn, _INSERT, id="mer_never", name="never")

        async def third() -> None:
            await asyncio.to_thread(blocker.entered.wait, 10)
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_third", name="third")

        tasks = [asyncio.create_task(first()), asyncio.create_task(cancelled()), asyncio.create_task(third())]
        await asyncio.to_thread(blocker.entered.wait, 10)
        await eventually(lambda: group._waiting == 1, what="the third unit queued")
        await blocker.cancel_inside(tasks[1], times)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        assert results[0] is None and isinstance(results[1], asyncio.CancelledError) and results[2] is None, results
        assert group.batches == 1  # still one commit for the batch
    finally:
        blocker.released.set()
        await db.dispose()
    assert await _ids(sqlite_url) == ["mer_first", "mer_third"]


@pytest.mark.parametrize("times", [1, 2])
async def test_a_unit_cancelled_after_its_work_is_part_of_the_batch(sqlite_url: str, times: int) -> None:
    """Cancelled while its RELEASE waits for the connection (and, the second time, while
    the commit does): its writes are the batch's, its caller hears CancelledError, and the
    other unit of the batch is written — by the one commit."""
    db = _threaded_database(sqlite_url)
    group = db._group
    assert group is not None
    group.max_age_s = 60.0
    blocker = _Block()
    try:
        first_written, work_done = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with db.write() as conn:
                await blocker.install(conn)
                await execute(conn, _INSERT, id="mer_first", name="first")
                first_written.set()
                await eventually(lambda: group._waiting == 1, what="the second unit queued")

        async def second() -> None:
            await first_written.wait()
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_second", name="second")
                # The connection's thread busy when the unit's RELEASE is sent behind it.
                busy = asyncio.ensure_future(fetch_tuples(conn, Sql("SELECT paygate_block()")))
                await asyncio.to_thread(blocker.entered.wait, 10)
                work_done.set()
            await busy

        tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
        await work_done.wait()  # the second unit now waits for its RELEASE
        await blocker.cancel_inside(tasks[1], times)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        assert results[0] is None and isinstance(results[1], asyncio.CancelledError), results
        assert group.batches == 1
    finally:
        blocker.released.set()
        await db.dispose()
    assert await _ids(sqlite_url) == ["mer_first", "mer_second"]


async def test_the_batch_commits_when_the_unit_it_was_left_to_gives_up_waiting(sqlite_url: str) -> None:
    """A unit that ends while another waits leaves the commit to that one; if the waiting
    unit is cancelled before its turn, the batch still commits — its caller is not kept
    waiting for a later write, and the write lock is not held until one comes."""
    db = create_database(sqlite_url)
    group = db._group
    assert group is not None
    group.max_age_s = 60.0
    try:
        second_queued = asyncio.Event()

        async def first() -> None:
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_first", name="first")
                second_queued.set()
                await eventually(lambda: group._waiting == 1, what="the second unit queued")
                waiting.cancel()  # gives up while the first still holds the batch

        async def second() -> None:
            await second_queued.wait()
            async with db.write() as conn:
                await execute(conn, _INSERT, id="mer_second", name="second")

        waiting = asyncio.create_task(second())
        await asyncio.wait_for(first(), 10)  # returned: durable
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert group.batches == 1
        assert await _ids(sqlite_url) == ["mer_first"]  # by another process, while this one runs
    finally:
        await db.dispose()


async def test_postgresql_has_no_batch_to_lose(database_url: str) -> None:
    """PostgreSQL writes are transactions of their own on pooled connections (no group
    commit): a write cancelled inside a statement takes only its own transaction with it."""
    if not database_url.startswith("postgres"):
        pytest.skip("PostgreSQL: SQLite's case is the tests above")
    db = create_database(database_url)
    assert db._group is None
    suffix = uuid.uuid4().hex[:12]
    try:
        async def cancelled() -> None:
            async with db.write() as conn:
                await execute(conn, _INSERT, id=f"mer_cancelled_{suffix}", name="cancelled")
                await conn.execute(text(f"SELECT pg_sleep(30), '{suffix}'"))

        async def other() -> None:
            async with db.write() as conn:
                await execute(conn, _INSERT, id=f"mer_other_{suffix}", name="other")

        task = asyncio.create_task(cancelled())

        async def sleeping() -> int:
            async with db.read() as conn:
                return int(await fetch_value(conn, Sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q AND state = 'active'"),
                    q=f"SELECT pg_sleep(30), '{suffix}'%"))

        await eventually(sleeping, until=lambda n: n == 1, what="the statement in flight")
        await other()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.write() as conn:  # the pool still serves writes
            await execute(conn, _INSERT, id=f"mer_two_{suffix}", name="two")
        async with db.read() as conn:
            found = await fetch_all(conn, Sql("SELECT id FROM merchants WHERE id LIKE :p ORDER BY id"), p=f"%{suffix}")
        assert [r["id"] for r in found] == [f"mer_other_{suffix}", f"mer_two_{suffix}"]
    finally:
        await db.dispose()

