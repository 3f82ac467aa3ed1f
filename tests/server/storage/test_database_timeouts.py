"""The database timeouts (docs/operations.md, "Database timeouts") against a PostgreSQL
that stops answering: our connections go through a fault proxy (the shared server itself is
never touched). A blackholed or half-open connection fails within the timeout as an outage
(the HTTP layer's 503), is dropped, and the pool works again once the network does; a
transaction whose client went silent is ended by the server, releasing its locks."""
from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from paygate_server.storage import Database, create_database
from paygate_server.storage.availability import is_database_unavailable
from paygate_server.storage.statements import Sql, fetch_value
from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxy

COMMAND_S, CONNECT_S = 0.5, 0.5
# What a timed-out call may take beyond its timeout: asyncpg's cancel request (bounded by
# the same timeout), the invalidation, a loaded machine.
SLACK_S = 2.0
_ONE = Sql("SELECT 1")


@pytest.fixture
async def proxied(database_url: str) -> AsyncIterator[tuple[FaultProxy, Database]]:
    if not database_url.startswith("postgres"):
        pytest.skip("network faults between the gateway and a database server (PostgreSQL)")
    url = make_url(database_url)
    async with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        db = create_database(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
                             pool_size=2, pool_timeout_s=1.0, connect_timeout_s=CONNECT_S,
                             command_timeout_s=COMMAND_S, idle_in_transaction_timeout_s=1.0)
        try:
            yield proxy, db
        finally:
            await db.dispose()


async def _fails_within(bound_s: float, work: object) -> BaseException:
    started = time.monotonic()
    try:
        await work  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - the test classifies it below
        elapsed = time.monotonic() - started
        assert elapsed < bound_s, f"took {elapsed:.2f}s"
        assert is_database_unavailable(exc), repr(exc)
        return exc
    raise AssertionError("the call succeeded through a fault")


async def _one_on_driver(db: Database) -> int:
    async with db.read_one() as conn:
        return int(await fetch_value(conn, _ONE))


async def _one_on_sqlalchemy(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT 1"))).scalar_one())


@pytest.mark.parametrize("path", [_one_on_driver, _one_on_sqlalchemy], ids=["driver", "sqlalchemy"])
@pytest.mark.parametrize("fault", ["blackhole", "half-open"])
async def test_a_silent_connection_fails_as_an_outage_and_is_replaced(
        proxied: tuple[FaultProxy, Database], path, fault: str) -> None:  # type: ignore[no-untyped-def]
    proxy, db = proxied
    assert await path(db) == 1  # a pooled connection, made before the fault
    if fault == "blackhole":
        proxy.blackhole()
    else:
        proxy.half_open = True
    await _fails_within(COMMAND_S + CONNECT_S + SLACK_S, path(db))
    proxy.heal()
    # The connection that timed out was dropped: the next call gets a working one at once.
    assert await path(db) == 1


async def test_a_blackholed_connect_fails_within_the_connect_timeout(
        proxied: tuple[FaultProxy, Database]) -> None:
    proxy, db = proxied
    proxy.blackhole()
    await _fails_within(CONNECT_S + SLACK_S, _one_on_driver(db))
    proxy.heal()
    assert await _one_on_driver(db) == 1


async def test_the_server_ends_a_transaction_whose_client_went_silent(
        proxied: tuple[FaultProxy, Database], database_url: str) -> None:
    """A row lock taken on a connection that then goes half-open would be held as long as
    the server keeps the session: idle_in_transaction_timeout_s ends it."""
    proxy, db = proxied
    table = f"t_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY); INSERT INTO {table} VALUES (1)")
        async with db.raw_connection() as conn:
            await conn.execute(text(f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE"))  # in a transaction
            proxy.half_open = True  # the COMMIT below never arrives
            await _fails_within(COMMAND_S + SLACK_S, conn.commit())

        async def lock_free() -> bool:
            try:
                await admin.execute(f"BEGIN; SELECT id FROM {table} WHERE id = 1 FOR UPDATE NOWAIT; ROLLBACK")
                return True
            except asyncpg.LockNotAvailableError:
                await admin.execute("ROLLBACK")
                return False

        await eventually(lock_free, timeout=10, what="the server to end the orphaned transaction")
    finally:
        await admin.execute(f"DROP TABLE IF EXISTS {table}")
        await admin.close()
