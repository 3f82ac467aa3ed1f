"""The relay: durable offsets, one active relay per consumer, resumption."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.cdc.relay import Relay
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.changes import Change
from paygate_server.storage.relay_leases import ConsumerLease
from paygate_server.storage.schema_history import cdc_offsets
from tests.server.cdc.conftest import (
    ListSink,
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
    touch,
)
from tests.support.eventually import eventually

FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)


async def test_lease_is_exclusive_and_released(db: Database) -> None:
    a, b = ConsumerLease(db, "archive"), ConsumerLease(db, "archive")
    other = ConsumerLease(db, "webhooks")
    assert await a.acquire()
    assert not await b.acquire()
    assert await other.acquire()  # leases are per consumer
    await a.release()
    assert await b.acquire()
    await b.release()
    await other.release()


async def test_a_dead_lease_holders_connection_frees_the_lease(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite leases are flocks, released by the kernel with the process (the e2e crash test shows it)")
    a, b = ConsumerLease(db, "archive"), ConsumerLease(db, "archive")
    assert await a.acquire()
    async with a.read() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with db.read() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    await eventually(b.acquire, timeout=10, interval=0.05, what="the lease freed")
    await b.release()
    await a.release()  # the broken connection is discarded, not returned to the pool


async def test_two_relays_on_one_consumer_deliver_each_change_once(db: Database) -> None:
    merchant = await new_merchant(db)
    one, two = ListSink(name="shared"), ListSink(name="shared")
    relays = [Relay(db, FAST, [one]), Relay(db, FAST, [two])]
    tasks = [asyncio.create_task(r.run_forever()) for r in relays]
    try:
        for _ in range(30):
            async with db.write() as conn:
                pid = await new_intent(conn, merchant)
                await touch(conn, pid, "canceled")
        expected = await all_changes(db)
        await eventually(lambda: len(one.received) + len(two.received) >= len(expected))
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Only the lease holder delivers, so together they hold every change exactly once.
    assert not (one.received and two.received)
    assert_exactly_once_in_order(one.received + two.received, expected)


async def test_offsets_are_durable_and_resumed(db: Database) -> None:
    merchant = await new_merchant(db)
    async with db.write() as conn:
        for _ in range(12):
            await new_intent(conn, merchant)
    first = ListSink(name="resume")
    assert (await Relay(db, FAST, [first]).drain())["resume"] == 12
    async with db.write() as conn:
        pid = await new_intent(conn, merchant)
        await touch(conn, pid, "canceled")
    second = ListSink(name="resume")
    assert (await Relay(db, FAST, [second]).drain())["resume"] == 2
    assert [c.intent_id for c in second.received] == [pid, pid]
    async with db.read() as conn:
        row = (await conn.execute(select(cdc_offsets).where(cdc_offsets.c.consumer == "resume"))).one()
    assert row.delivered == 14
    assert_exactly_once_in_order(first.received + second.received, await all_changes(db))


async def test_a_sink_ahead_of_the_offset_is_not_sent_changes_again(db: Database) -> None:
    merchant = await new_merchant(db)
    async with db.write() as conn:
        for _ in range(5):
            await new_intent(conn, merchant)
    sink = ListSink(name="ahead")
    await Relay(db, FAST, [sink]).drain()
    ahead = sink.received[2].position

    class Remembers(ListSink):
        async def start(self):  # type: ignore[no-untyped-def]
            return ahead  # e.g. the archive's manifest says it holds everything up to here

    async with db.write() as conn:
        await conn.execute(cdc_offsets.delete().where(cdc_offsets.c.consumer == "ahead"))
    again = Remembers(name="ahead")
    await Relay(db, FAST, [again]).drain()
    assert [c.id for c in again.received] == [c.id for c in sink.received[3:]]


async def test_drain_returns_by_its_timeout_when_the_lease_wait_is_longer(db: Database) -> None:
    """``timeout_s`` bounds the wait for transactions still running; ``lease_timeout_s`` only
    the wait for the lease — the longer of the two must not stand in for the shorter."""
    if db.is_sqlite:
        pytest.skip("SQLite has no transaction a drain waits for (one writer, ids in commit order)")
    merchant = await new_merchant(db)
    # A transaction that began before the drain and is still running when it ends: the
    # drain can never catch up with it, so only its own timeout makes it return.
    async with db.engine.connect() as running:
        await running.execute(text("SELECT pg_current_xact_id()"))  # takes a transaction id
        async with db.write() as conn:  # a later one commits: the drain's target passes it
            await new_intent(conn, merchant)
        sink = ListSink(name="bounded")
        started = time.monotonic()
        counts = await Relay(db, FAST, [sink]).drain(lease_timeout_s=60.0, timeout_s=0.5)
        took = time.monotonic() - started
        await running.rollback()
    assert counts["bounded"] == len(sink.received)
    assert took < 10.0, f"drain(timeout_s=0.5) took {took:.1f} s"


@pytest.mark.parametrize("transactional", [True, False])
async def test_after_commit_follows_each_committed_batch(db: Database, transactional: bool) -> None:
    """Every consumer has the hook (declared on :class:`Consumer`, a no-op by default) and the
    relay calls it once per batch, after the batch's offset committed — in-database and
    external consumers alike."""
    merchant = await new_merchant(db)
    async with db.write() as conn:
        for _ in range(7):
            await new_intent(conn, merchant)

    class Counts(ListSink):
        def __init__(self) -> None:
            super().__init__(name="hooked", batch_size=3, transactional=transactional)
            self.seen_at_commit: list[int] = []

        def after_commit(self) -> None:
            self.seen_at_commit.append(len(self.received))

    sink = Counts()
    assert (await Relay(db, FAST, [sink]).drain())["hooked"] == 7
    assert sink.seen_at_commit == [3, 6, 7]
    # A consumer that does not override it inherits the no-op.
    plain = ListSink(name="plain")
    assert (await Relay(db, FAST, [plain]).drain())["plain"] == 7


@pytest.mark.parametrize("transactional", [False, True])
async def test_an_offset_that_vanished_is_not_written_as_if_it_were_there(db: Database, transactional: bool) -> None:
    # Before: the offset's UPDATE matched no row and the relay went on delivering as if it
    # had recorded it — pruning, which no longer saw the consumer, did not wait for it.
    class Forgotten(ListSink):
        async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None:
            await super().deliver(changes, conn)
            forget = cdc_offsets.delete().where(cdc_offsets.c.consumer == self.name)
            if conn is not None:  # (SQLite: one writer; the offset's transaction is this one)
                await conn.execute(forget)
                return
            async with db.write() as other:  # `forget-consumer`, or any DELETE, meanwhile
                await other.execute(forget)

    merchant = await new_merchant(db)
    async with db.write() as conn:
        await new_intent(conn, merchant)
    with pytest.raises(RuntimeError, match="the offset of relay consumer test is gone"):
        await Relay(db, FAST, [Forgotten(transactional=transactional)]).drain()
