"""Commit-safe reading of change_log: concurrent, differently-long transactions skip nothing,
and one intent's changes are never delivered backwards (storage/change_log.py explains why)."""
from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import func, select, text

from paygate_server.cdc.relay import Relay
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.change_log import PostgresReader, reader_for
from paygate_server.storage.changes import START, Change, Position
from paygate_server.storage.schema import change_log
from tests.server.cdc.conftest import (
    ListSink,
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
    touch,
)
from tests.support.eventually import eventually


async def _read_all(db: Database, pos: Position, limit: int = 3) -> tuple[list[Change], Position]:
    reader = reader_for(db)
    out: list[Change] = []
    while True:
        async with db.read() as conn:
            batch = await reader.read(conn, pos, limit)
        changes, new_pos = batch.changes, batch.position
        out.extend(changes)
        if not changes and new_pos == pos:
            return out, pos
        pos = new_pos


async def test_an_older_transaction_committing_later_is_neither_skipped_nor_reordered(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: ids are commit-ordered (covered by the concurrent test)")
    merchant = await new_merchant(db)
    async with db.write() as conn:
        x = await new_intent(conn, merchant)  # x: seq 1
    b = await db.engine.connect()
    c = await db.engine.connect()
    try:
        tb = await b.begin()
        await new_intent(b, merchant)  # B takes its txid first ...
        tc = await c.begin()
        await new_intent(c, merchant)  # ... C (long-running, unrelated) the next one
        async with db.write() as a:
            await touch(a, x)  # A (newest txid) commits x's seq 2
        await touch(b, x)  # B (older txid than A and C) writes x's seq 3
        await tb.commit()

        # C is still running: x's seq 3 (txid < xmin) is visible, but its predecessor seq 2
        # (txid > xmin) is not deliverable yet: seq 3 must wait.
        got, pos = await _read_all(db, START)
        assert [ch.intent_seq for ch in got if ch.intent_id == x] == [1]

        # The "highest id seen" poller, for contrast: it skips C's row forever.
        async with db.read() as conn:
            naive_last = (await conn.execute(select(func.max(change_log.c.id)))).scalar_one()
        await tc.commit()
        async with db.read() as conn:
            naive_later = (await conn.execute(select(func.count()).where(change_log.c.id > naive_last))).scalar_one()
        assert naive_later == 0, "the scenario no longer exercises the polling-outbox trap"

        rest, _ = await _read_all(db, pos)
        assert_exactly_once_in_order(got + rest, await all_changes(db))
        assert [ch.intent_seq for ch in got + rest if ch.intent_id == x] == [1, 2, 3]
    finally:
        await b.close()
        await c.close()


async def test_window_end_never_splits_an_intent(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL windows")
    merchant = await new_merchant(db)
    async with db.write() as conn:
        x = await new_intent(conn, merchant)
    b = await db.engine.connect()
    hold = await db.engine.connect()
    try:
        tb = await b.begin()
        await new_intent(b, merchant)
        th = await hold.begin()
        await hold.execute(text("SELECT pg_current_xact_id()"))  # an unrelated txid between B and A
        async with db.write() as a:
            await touch(a, x)
        await touch(b, x)
        await tb.commit()
        async with db.read() as conn:
            batch = await PostgresReader().read(conn, START, 100)
            seqs = {r.intent_seq: r.txid for r in await conn.execute(
                select(change_log.c.intent_seq, change_log.c.txid).where(change_log.c.intent_id == x))}
        assert seqs[3] < seqs[2]  # the inversion is really there
        # The window was lowered to end before seq 3, and delivered what lies below it.
        assert batch.position.horizon <= seqs[3], "the window would deliver seq 3 without seq 2"
        assert [c.intent_seq for c in batch.changes if c.intent_id == x] == [1]
        await th.rollback()
    finally:
        await b.close()
        await hold.close()


async def test_concurrent_differently_long_transactions_skip_nothing(db: Database) -> None:
    merchant = await new_merchant(db)
    async with db.write() as conn:
        shared = [await new_intent(conn, merchant) for _ in range(5)]
    sink = ListSink(batch_size=5)
    relay = Relay(db, Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.05), [sink])
    task = asyncio.create_task(relay.run_forever())
    rng = random.Random(6)
    delays = [0.0, 0.0, 0.005, 0.02, 0.05, 0.15] if not db.is_sqlite else [0.0, 0.001, 0.003]

    async def writer(n: int) -> None:
        for _ in range(8):
            async with db.write() as conn:
                await new_intent(conn, merchant)  # the transaction's id is taken here...
                await asyncio.sleep(rng.choice(delays))  # ... held open for a while ...
                if not db.is_sqlite and rng.random() < 0.2:
                    await conn.execute(text("SELECT pg_sleep(0.1)"))
                # ... then queued on shared intents' locks (taken in one order: no deadlock)
                for pid in sorted(rng.sample(shared, 2)):
                    await touch(conn, pid)

    try:
        await asyncio.gather(*(writer(n) for n in range(8)))
        expected = await all_changes(db)
        await eventually(lambda: relay.stats["test"].delivered if "test" in relay.stats else 0,  # offsets saved too
                         until=lambda delivered: delivered >= len(expected), timeout=30,
                         what=f"the relay to deliver all {len(expected)} changes")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert_exactly_once_in_order(sink.received, expected)
    assert relay.stats["test"].delivered == len(expected)


async def test_postgres_reader_pages_inside_a_window(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL windows")
    merchant = await new_merchant(db)
    async with db.write() as conn:
        for _ in range(10):
            await new_intent(conn, merchant)
    reader = PostgresReader()
    async with db.read() as conn:
        batch = await reader.read(conn, START, 4)
    first, pos = batch.changes, batch.position
    assert len(first) == 4 and pos.window_end is not None and pos.last_id == first[-1].id
    rest, final = await _read_all(db, pos, limit=4)
    assert final.window_end is None and final.horizon > 0
    assert [c.id for c in first + rest] == sorted(c.id for c in first + rest)
    assert_exactly_once_in_order(first + rest, await all_changes(db))
