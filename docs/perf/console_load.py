"""The console's load check (issue #20): its reads at 100,000 payments, p50/p99 of each.

Seeds N payments (tests/support/console_seed.py: a fifth in the last hour, the rest over
30 days; statuses, amounts, cards and routes spread) into a fresh database, then runs every
read of storage/console_reads.py 200 times — the payment search with each filter, its first
page and a page deep into the results, a payment's page, the reconciliation queue and the
overview — and prints a Markdown table of p50/p99 in milliseconds (storage level: the
statement, the driver, the rows into dataclasses; no HTTP, no template).

    PYTHONPATH=. .venv/bin/python docs/perf/console_load.py sqlite 100000
    PAYGATE_TEST_DATABASE_URL=postgresql://127.0.0.1:5432/test \
      PYTHONPATH=. .venv/bin/python docs/perf/console_load.py postgresql 100000

The database is a new one (PostgreSQL: on ``PAYGATE_TEST_DATABASE_URL``'s server), dropped
at the end.
"""
from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from paygate_server.clock import now_us
from paygate_server.storage import create_database
from paygate_server.storage.console_reads import (
    PaymentSearch,
    overview,
    payment_detail,
    reconciliation_queue,
    search_payments,
)
from paygate_server.storage.console_search import encode_cursor
from paygate_server.storage.engine import Database
from tests.support.console_seed import COMMON_LAST4, DAY_US, Seeded, seed_payments
from tests.support.databases import drop_database, migrate, new_database_url

RUNS = 200


def _deep_cursor(intents: list[dict[str, Any]], rank: int) -> str:
    """The cursor of the ``rank``-th newest of ``intents``: a page that far into the results."""
    ordered = sorted(intents, key=lambda i: (i["created_at"], i["id"]), reverse=True)
    row = ordered[min(rank, len(ordered) - 1)]
    return encode_cursor(row["created_at"], row["id"])


def reads(db: Database, seeded: Seeded, now: int) -> dict[str, Callable[[], Awaitable[object]]]:
    intents = seeded.intents
    merchant = seeded.merchants[3]
    of_merchant = [i for i in intents if i["merchant_id"] == merchant]
    rare_last4 = next(a["card_last4"] for a in seeded.attempts if a["card_last4"] != COMMON_LAST4)
    refunded = seeded.refunds[len(seeded.refunds) // 2]["intent_id"]
    day_start = now - 10 * DAY_US

    def search(**kw: Any) -> Callable[[], Awaitable[object]]:
        return lambda: search_payments(db, PaymentSearch(**kw))

    return {
        "search, no filter, first page": search(),
        "search, no filter, page at row 50,000": search(
            after=_deep_cursor(intents, len(intents) // 2)),
        "search, by id": search(intent_id=intents[len(intents) // 3]["id"]),
        "search, by merchant, first page": search(merchant_id=merchant),
        "search, by merchant, page at half its rows": search(
            merchant_id=merchant, after=_deep_cursor(of_merchant, len(of_merchant) // 2)),
        "search, by status succeeded": search(status="succeeded"),
        "search, by status in_progress (3 %)": search(status="in_progress"),
        "search, amount 1,999–2,010": search(amount_min=1999, amount_max=2010),
        "search, amount ≥ 25,090 (rare)": search(amount_min=25_090),
        f"search, last 4 {COMMON_LAST4} (30 %)": search(card_last4=COMMON_LAST4),
        "search, a rare last 4": search(card_last4=rare_last4),
        "search, one day 10 days ago": search(
            created_from=day_start, created_to=day_start + DAY_US),
        "search, merchant + status + last 4": search(merchant_id=merchant, status="succeeded",
                                                     card_last4=COMMON_LAST4),
        "payment page (detail)": lambda: payment_detail(db, refunded),
        "reconciliation queue, first page": lambda: reconciliation_queue(db, 50, now=now),
        "overview (the last hour)": lambda: overview(db, now=now),
    }


async def seed_as_after_a_day(db: Database, n: int, now: int) -> Seeded:
    """``n`` seeded payments, the database then as autovacuum would leave it (also used by
    console_http_load.py)."""
    started = time.perf_counter()
    seeded = await seed_payments(db, n, now=now)
    print(f"seeded {n} payments in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if not db.is_sqlite:
        # Statistics for the planner and the visibility map for index-only scans, as
        # autovacuum makes them after a bulk load (without statistics PostgreSQL guesses
        # a last 4 matches 58 rows and plans 100× slower).
        async with db.raw_connection() as conn:
            quiet = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await quiet.exec_driver_sql("VACUUM ANALYZE")
    return seeded


async def measure(url: str, n: int) -> list[tuple[str, float, float]]:
    db = create_database(url)
    try:
        now = now_us()
        seeded = await seed_as_after_a_day(db, n, now)
        results = []
        for name, read in reads(db, seeded, now).items():
            await read()  # warm: the plan, the pool, the pages
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                await read()
                times.append((time.perf_counter() - t) * 1000)
            results.append((name, *p50_p99(times)))
        return results
    finally:
        await db.dispose()


# What this script and console_http_load.py share: the command line, the database, the table.
def backend_and_size(script: str) -> tuple[str, int]:
    """``SCRIPT sqlite|postgresql N`` from the command line; a usage line and exit 2 otherwise."""
    backends = ("sqlite", "postgresql")
    if len(sys.argv) != 3 or sys.argv[1] not in backends or not sys.argv[2].isdigit():
        print(f"usage: {script} sqlite|postgresql N", file=sys.stderr)
        sys.exit(2)
    return sys.argv[1], int(sys.argv[2])


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[tuple[str, Path]]:
    """A new migrated database (PostgreSQL: on PAYGATE_TEST_DATABASE_URL's server) and a
    scratch folder, both gone at the end."""
    with tempfile.TemporaryDirectory() as folder:
        url = new_database_url(backend, Path(folder))
        try:
            migrate(url)
            yield url, Path(folder)
        finally:
            drop_database(url)


def p50_p99(times_ms: list[float]) -> tuple[float, float]:
    times_ms = sorted(times_ms)
    return statistics.median(times_ms), times_ms[int(len(times_ms) * 0.99) - 1]


def print_table(heading: str, results: list[tuple[str, float, float]]) -> None:
    print(f"| {heading} | p50 ms | p99 ms |\n|---|---|---|")
    for name, p50, p99 in results:
        print(f"| {name} | {p50:.2f} | {p99:.2f} |")


def main() -> None:
    backend, n = backend_and_size("console_load.py")
    with fresh_database(backend) as (url, _):
        results = asyncio.run(measure(url, n))
    print_table(f"read ({backend}, {n:,} payments, {RUNS} runs)", results)


if __name__ == "__main__":
    main()
