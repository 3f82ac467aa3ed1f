"""Wall time of the status stream's reads (docs/perf/history.md, "The status stream reads the
history"): the intent's row by id (what a wake-up read before) against the stream's start and
its read of the intent's changes (``storage/status_changes.py``), on a new migrated database
of each kind filled through the capture triggers: ``PARTS`` id ranges of 300 intents of three
changes each (on PostgreSQL one partition each, as retention keeps them, plus the two kept
ahead and the DEFAULT one). Prints medians and p90 over 3000 reads, twice, and on PostgreSQL
the plan of the change read without and with the id floor.

    PAYGATE_TEST_DATABASE_URL=postgresql://127.0.0.1:5432/test \\
        .venv/bin/python docs/perf/status_stream_reads.py postgresql 30
    .venv/bin/python docs/perf/status_stream_reads.py sqlite 4
"""
from __future__ import annotations

import asyncio
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from paygate_server.storage import Database, open_payment_store
from paygate_server.storage.change_log_partitions import PARTITION_IDS, create_statement, partition_name
from paygate_server.storage.status_changes import _PG_CHANGES, StatusChanges
from tests.support.databases import drop_database, migrated_database_url, opened_database

PER = 300  # intents per id range


async def _partition(db: Database, lo: int) -> None:
    async with db.raw_connection() as c:
        if not (await c.execute(text("SELECT 1 FROM pg_class WHERE relname = :n"), {"n": partition_name(lo)})).first():
            await c.execute(text(create_statement(lo, lo + PARTITION_IDS)))
        await c.commit()


async def fill(db: Database, parts: int) -> list[str]:
    async with db.write() as c:
        await c.execute(text("INSERT INTO merchants (id, name, created_at) VALUES ('mer_bench', 'bench', 0)"))
    pids = []
    for p in range(parts):
        if not db.is_sqlite:
            await _partition(db, p * PARTITION_IDS)
            async with db.raw_connection() as c:
                await c.execute(text(f"SELECT setval('change_log_id_seq', {p * PARTITION_IDS + 1})"))
                await c.commit()
        for _ in range(PER):
            pid = f"pi_{uuid.uuid4().hex}"
            pids.append(pid)
            async with db.write() as c:
                await c.execute(text(
                    "INSERT INTO payment_intents (id, merchant_id, status, amount, currency, client_secret_hash,"
                    " created_at, updated_at) VALUES (:id, 'mer_bench', 'created', 100, 'USD', :h, 1, 1)"),
                    {"id": pid, "h": uuid.uuid4().hex})
                for status in ("in_progress", "failed"):
                    await c.execute(text("UPDATE payment_intents SET status = :s, version = version + 1 WHERE id = :id"),
                                    {"s": status, "id": pid})
    async with db.raw_connection() as c:
        if not db.is_sqlite:
            for ahead in (parts, parts + 1):
                await _partition(db, ahead * PARTITION_IDS)
        await c.execute(text("ANALYZE"))
        await c.commit()
    return pids


async def timed(label: str, read: Callable[[str], Awaitable[Any]], pids: list[str], n: int = 3000) -> None:
    for pid in pids[:200]:
        await read(pid)
    took = []
    for _ in range(n):
        pid = random.choice(pids)
        start = time.perf_counter()
        await read(pid)
        took.append((time.perf_counter() - start) * 1e6)
    took.sort()
    print(f"{label:52s} median {statistics.median(took):7.1f} µs  p90 {took[int(0.9 * n)]:7.1f} µs")


async def main(url: str, parts: int) -> None:
    async with opened_database(url) as db:
        pids = await fill(db, parts)
        recent = pids[-PER:]  # a stream watches a recent intent: its changes are in the newest range
        store, stream = open_payment_store(db), StatusChanges(db)
        async with db.read() as c:
            heads = dict((await c.execute(text("SELECT intent_id, last_seq FROM change_log_heads"))).all())
            ids = {(i, s): cid for i, s, cid in (await c.execute(text(
                "SELECT intent_id, intent_seq, id FROM change_log"))).all()}
        print(f"{'sqlite' if db.is_sqlite else 'postgresql'}, {parts} id ranges of {PER} intents")
        for _ in range(2):
            await timed("before: the intent's row (get_intent)", lambda p: store.get_intent("mer_bench", p), pids)
            await timed("start: the row and its head", lambda p: stream.start("mer_bench", p), pids)
            await timed("changes, none new, no floor (a first read whose guess missed)", lambda p: stream.after(p, heads[p], 0), recent)
            await timed("changes, none new, with a floor (the guess, then the last change read)",
                        lambda p: stream.after(p, heads[p], ids[(p, heads[p])]), recent)
            await timed("changes, 2 new, no floor (a first read whose guess missed)", lambda p: stream.after(p, heads[p] - 2, 0), recent)
            await timed("changes, 2 new, with a floor (the guess, then the last change read)",
                        lambda p: stream.after(p, heads[p] - 2, ids[(p, heads[p] - 2)]), recent)
        if not db.is_sqlite:
            pid = recent[-1]
            sql = _PG_CHANGES.text.replace(":intent_id", f"'{pid}'").replace(":after_seq", "1")
            after_id = ids[(pid, 1)]
            async with db.raw_connection() as c:
                for floor in (0, after_id - after_id % PARTITION_IDS):
                    plan = [r[0] for r in (await c.execute(text(
                        "EXPLAIN (ANALYZE, SUMMARY) " + sql.replace(":id_floor", str(floor))))).all()]
                    visited = {m for line in plan for m in re.findall(r" on (change_log_(?:p\d+|default)) ", line)}
                    print(f"plan, floor {floor}: {len(visited)} partitions visited; {plan[-2]}; {plan[-1]}")


if __name__ == "__main__":
    backend, parts = sys.argv[1], int(sys.argv[2])
    url = migrated_database_url(backend, Path(tempfile.mkdtemp(prefix="paygate-stream-")))
    try:
        asyncio.run(main(url, parts))
    finally:
        drop_database(url)
