"""What counting an endpoint's deliveries in flight costs a webhook claim (docs/performance.md,
"Webhook claims"): run once with the old code's server package on PYTHONPATH and once with
the new. A fresh migrated PostgreSQL database (tests.support.databases, so
PAYGATE_TEST_DATABASE_URL set): 20 endpoints, 5,000 due deliveries on one of them and 200
on each other; N rounds of due() and a claim of one delivery, each finished at once
(untimed, due again) so the backlog and the free slots stay as they were. Prints medians,
per statement as the client sees it and per claim transaction (BEGIN to COMMIT).

    PYTHONPATH=<server>:. .venv/bin/python docs/perf/webhook_claims.py [N] [--explain]
"""
from __future__ import annotations

import asyncio
import inspect
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import event, insert, text

from paygate_server.storage import create_database
from paygate_server.storage.schema_history import webhook_deliveries, webhook_endpoints
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from tests.support.databases import another_database

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 3000
WARM_UP = 200
NEW = "endpoint_ids" in inspect.signature(DeliveryQueue.claiming).parameters
NOW, LEASE = 10_000_000, 30_000_000
EXPLAINED = [
    "UPDATE webhook_deliveries SET next_attempt_at = 5, lease_until = 5"
    " WHERE event_id = 'evt_we_00_7' AND endpoint_id = 'we_00' AND status = 'pending'"
    " AND next_attempt_at = 8 AND (SELECT count(*) FROM webhook_deliveries AS live"
    " WHERE live.endpoint_id = 'we_00' AND live.lease_until > 3) < 4",
    f"SELECT event_id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= {NOW}"
    f" AND endpoint_id NOT IN (SELECT endpoint_id FROM webhook_deliveries WHERE lease_until > {NOW}"
    " GROUP BY endpoint_id HAVING count(*) >= 4) ORDER BY next_attempt_at LIMIT 8",
]


async def main(url: str) -> None:
    db = create_database(url)
    endpoints = [f"we_{i:02d}" for i in range(20)]
    async with db.write() as conn:
        await conn.execute(insert(webhook_endpoints), [
            dict(id=e, merchant_id="mer_x", url="https://x.test/", events=None, secret_sealed=b"s",
                 status="enabled", created_at=1, updated_at=1) for e in endpoints])
        await conn.execute(insert(webhook_deliveries), [
            dict(event_id=f"evt_{e}_{n}", endpoint_id=e, merchant_id="mer_x", status="pending",
                 attempts=0, next_attempt_at=1 + n, created_at=1, updated_at=1)
            for i, e in enumerate(endpoints) for n in range(5000 if i == 0 else 200)])
    async with db.write() as conn:
        await conn.execute(text("ANALYZE webhook_deliveries"))
        if NEW and "--explain" in sys.argv:
            for sql in EXPLAINED:
                plan = await conn.execute(text("EXPLAIN " + sql))
                print("\n".join(row[0] for row in plan))

    per_statement: dict[str, list[float]] = {}
    started: dict[int, float] = {}

    def before(conn: Any, *_: Any) -> None:
        started[id(conn)] = time.perf_counter()

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        per_statement.setdefault(" ".join(statement.split()[:2])[:32], []).append(
            time.perf_counter() - started.pop(id(conn)))

    event.listen(db.engine.sync_engine, "before_cursor_execute", before)
    event.listen(db.engine.sync_engine, "after_cursor_execute", after)
    queue = DeliveryQueue(db)
    claims, dues = [], []
    for k in range(N + WARM_UP):
        t0 = time.perf_counter()
        due = await (queue.due(NOW, 8, full_at=4) if NEW else queue.due(NOW, 8))
        t1 = time.perf_counter()
        row = due[k % len(due)]
        t2 = time.perf_counter()
        if NEW:
            round_ = queue.claiming(NOW, NOW + LEASE, endpoint_ids={row.endpoint_id},
                                    per_endpoint=4)
        else:
            round_ = queue.claiming(NOW + LEASE)  # type: ignore[call-arg]
        async with round_ as claim:
            assert await claim(row)
        t3 = time.perf_counter()
        await queue.finish(row.event_id, row.endpoint_id, status="pending", attempts=1,
                           status_code=500, error="x", now=NOW, next_at=NOW - 1_000_000 + k)
        if k >= WARM_UP:
            dues.append(t1 - t0)
            claims.append(t3 - t2)
    await db.dispose()
    for key, times in per_statement.items():
        if key.startswith("UPDATE"):
            times = times[::2]  # the claims' UPDATEs, not finish()'s (they alternate)
        print(f"  {key:<32} median {statistics.median(times[-N:]) * 1e6:.0f} µs")
    claim_us, due_us = statistics.median(claims) * 1e6, statistics.median(dues) * 1e6
    print(f"{'after' if NEW else 'before'}: {N} claims; claim transaction median {claim_us:.0f} µs;"
          f" due() median {due_us:.0f} µs")


if __name__ == "__main__":
    with TemporaryDirectory() as directory, another_database("postgresql", Path(directory)) as url:
        asyncio.run(main(url))
