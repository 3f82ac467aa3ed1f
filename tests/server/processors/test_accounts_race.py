"""Removing an account while routing rules naming it are stored (PostgreSQL, READ COMMITTED):
one of the two is refused, whichever commits first; the rules never name a removed account.

Each test holds the first operation's transaction open at the point where the race would
bite, starts the second, waits until PostgreSQL reports it waiting on a lock, and commits."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.merchants import create_merchant
from paygate_server.processors.accounts import (
    AccountError,
    add_account,
    list_processor_accounts,
    remove_account,
    set_routing,
    show_routing,
)
from paygate_server.storage import Database, create_database
from paygate_server.storage.processor_accounts import hold_active, mark_removed, set_rules
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually

MASTER = MasterKey(bytes.fromhex(TEST_MASTER_KEY))


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[Database]:
    if not database_url.startswith("postgres"):
        pytest.skip("SQLite runs one write transaction at a time: there is no interleaving to test")
    db = create_database(database_url)
    yield db
    await db.dispose()


async def _merchant_and_account(db: Database) -> tuple[str, str]:
    async with db.write() as conn:
        merchant = (await create_merchant(conn, MASTER, name="Race", origins=["http://127.0.0.1:9"])).merchant_id
    account = await add_account(db, MASTER, merchant_id=merchant, kind="simulator", name="A",
                                settings={"url": "http://127.0.0.1:9"}, credentials={})
    return merchant, account.id


async def _lock_waiters(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"))).scalar_one())


async def test_rules_committed_first_refuse_the_removal(pg: Database) -> None:
    merchant, account = await _merchant_and_account(pg)
    rules = [{"use": [account]}]
    async with pg.write() as conn:  # set_routing's transaction, at its hold
        assert await hold_active(conn, merchant, account)
        removal = asyncio.create_task(remove_account(pg, merchant_id=merchant, account_id=account))
        await eventually(lambda: _lock_waiters(pg), until=lambda n: n >= 1, what="the removal waiting on the lock")
        assert not removal.done()
        await set_rules(conn, merchant, jsoncodec.dumps(rules).decode(), now_us())
    with pytest.raises(AccountError, match="the routing rules use"):
        await removal
    assert [a.id for a in await list_processor_accounts(pg, merchant)] == [account]
    assert await show_routing(pg, merchant) == rules


async def test_removal_committed_first_refuses_the_rules(pg: Database) -> None:
    merchant, account = await _merchant_and_account(pg)
    async with pg.write() as conn:  # remove_account's transaction, after its mark
        assert await mark_removed(conn, merchant, account, now_us())
        routing = asyncio.create_task(set_routing(pg, merchant_id=merchant, document=[{"use": [account]}]))
        await eventually(lambda: _lock_waiters(pg), until=lambda n: n >= 1, what="the rules waiting on the lock")
        assert not routing.done()
    with pytest.raises(AccountError, match="is not an active processor account"):
        await routing
    assert await list_processor_accounts(pg, merchant) == []
    assert await show_routing(pg, merchant) is None
