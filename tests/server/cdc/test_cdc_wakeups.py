"""When the relay reads: wake-ups coalesce under load, an idle relay reads at once, a lingering
consumer does not read while it lingers, and changes held back by a running transaction are
looked for again without waiting for a wake-up or the poll."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.cdc.relay import ConsumerStats, Relay
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.changes import Change
from tests.server.cdc.conftest import (
    ListSink,
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
)
from tests.support.eventually import eventually

# A poll far beyond every wait below: whatever is delivered in time was not found by polling.
NO_POLL = Settings(relay_poll_interval_s=60.0, relay_lease_retry_s=0.02)
# Polled often: the tests below time how soon the relay reads.
_until = partial(eventually, timeout=20.0, interval=0.005)


@dataclass
class GatedSink(ListSink):
    """Holds every delivery until the test opens the gate."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None:
        self.entered.set()
        await self.gate.wait()
        self.received.extend(changes)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Relay], Any]]:
    tasks: list[asyncio.Task[None]] = []

    async def start(relay: Relay) -> ConsumerStats:
        tasks.append(asyncio.create_task(relay.run_forever()))
        name = relay.consumers[0].name
        await _until(lambda: name in relay.stats and relay.stats[name].caught_up.is_set())
        return relay.stats[name]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _commit_one(db: Database, merchant: str, relay: Relay) -> None:
    async with db.write() as conn:
        await new_intent(conn, merchant)
    relay.wake()  # what the notifier does for every committed change


async def test_wakes_during_a_delivery_become_one_read(db: Database, running: Any) -> None:
    merchant = await new_merchant(db)
    sink = GatedSink(batch_size=100)
    relay = Relay(db, NO_POLL, [sink], read_interval_s=0.05)
    stats = await running(relay)
    await _commit_one(db, merchant, relay)
    await asyncio.wait_for(sink.entered.wait(), 20)  # the first change is being delivered ...
    reads = stats.reads
    for _ in range(20):  # ... while 20 more commit, each waking the relay
        await _commit_one(db, merchant, relay)
    sink.gate.set()
    await _until(lambda: stats.delivered == 21)  # offsets saved too
    assert stats.reads - reads <= 2, f"{stats.reads - reads} reads for 20 wake-ups during one delivery"
    assert stats.batches == 2
    assert_exactly_once_in_order(sink.received, await all_changes(db))


async def test_a_stream_of_commits_is_read_at_most_about_once_per_interval(db: Database, running: Any) -> None:
    merchant = await new_merchant(db)
    sink = ListSink(batch_size=1000)
    interval = 0.2
    relay = Relay(db, NO_POLL, [sink], read_interval_s=interval)
    stats = await running(relay)
    reads = stats.reads
    started = time.monotonic()
    for _ in range(30):
        await _commit_one(db, merchant, relay)
    await _until(lambda: stats.delivered == 30)
    elapsed = time.monotonic() - started
    # Productive reads begin at least `interval` apart; a wake-up right after an empty read
    # is served at once, so at most two reads per interval (plus the first and last).
    assert stats.reads - reads <= 2 * (elapsed / interval) + 3, (stats.reads - reads, elapsed)
    assert_exactly_once_in_order(sink.received, await all_changes(db))


async def test_an_idle_relay_reads_at_once_on_a_wake(db: Database, running: Any) -> None:
    merchant = await new_merchant(db)
    sink = ListSink()
    # Neither the poll nor the read interval could explain a prompt delivery.
    relay = Relay(db, NO_POLL, [sink], read_interval_s=60.0)
    await running(relay)  # its first read found nothing: idle
    started = time.monotonic()
    await _commit_one(db, merchant, relay)
    await _until(lambda: len(sink.received) == 1, timeout=10.0)
    assert time.monotonic() - started < 10.0


async def test_a_lingering_consumer_reads_when_its_linger_is_over(db: Database, running: Any) -> None:
    merchant = await new_merchant(db)
    sink = ListSink(batch_size=1000, linger_s=1.5)
    relay = Relay(db, NO_POLL, [sink], read_interval_s=0.001)
    stats = await running(relay)
    reads = stats.reads
    for _ in range(10):
        await _commit_one(db, merchant, relay)
    await _until(lambda: stats.delivered == 10)
    # One read started the linger, one at its end took the rest: not one per wake-up.
    assert stats.batches == 1
    assert stats.reads - reads <= 3, f"{stats.reads - reads} reads while lingering"
    assert_exactly_once_in_order(sink.received, await all_changes(db))


async def test_a_change_held_back_by_a_running_transaction_is_delivered_when_it_ends(
        db: Database, running: Any) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite: one writer, nothing is ever held back")
    merchant = await new_merchant(db)
    sink = ListSink()
    relay = Relay(db, NO_POLL, [sink], read_interval_s=0.01)
    stats = await running(relay)
    hold = await db.engine.connect()
    try:
        held = await hold.begin()
        await hold.execute(text("SELECT pg_current_xact_id()"))  # an older transaction, writing nothing captured
        reads = stats.reads
        await _commit_one(db, merchant, relay)
        await _until(lambda: stats.reads >= reads + 2)  # it looked, and looked again: nothing deliverable
        assert sink.received == []
        await held.rollback()  # ends without any change, so without a wake-up
        await _until(lambda: len(sink.received) == 1, timeout=10.0)
    finally:
        await hold.close()
