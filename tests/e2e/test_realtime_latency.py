"""Latency from a committed status change to an SSE / long-poll client of a gateway worker
process that did not make the change (the change is committed by this process, directly in
the database, so the clock starts right before COMMIT).

As a test: a few dozen samples per mode and a generous bound. As the measuring script
behind docs/history.md::

    PAYGATE_TEST_DATABASE_URL=postgresql://127.0.0.1:5432/test \\
        .venv/bin/python -m tests.e2e.test_realtime_latency --samples 300
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from paygate_server.storage import create_database
from tests.server.cdc.conftest import new_intent, touch
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import Credentials, SignedClient


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def _measure(base_url: str, database_url: str, creds: Credentials, samples: int) -> dict[str, list[float]]:
    db = create_database(database_url)
    out: dict[str, list[float]] = {"sse": [], "long-poll": []}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=40) as http:
            client = SignedClient(http, creds)
            for _ in range(samples):
                async with db.write() as conn:
                    pid = await new_intent(conn, creds.merchant_id)
                target = f"/api/v1/payment/status/stream?paymentIntentId={pid}"
                async with http.stream("GET", target, headers=client.headers_for("GET", target, b"")) as r:
                    assert r.status_code == 200
                    events = r.aiter_lines()
                    async for line in events:  # the first event: the stream is subscribed
                        if line.startswith("data:"):
                            break
                    async with db.write() as conn:
                        await touch(conn, pid, "in_progress")
                        started = time.perf_counter()
                    async for line in events:
                        if line.startswith("data:") and '"in_progress"' in line:
                            out["sse"].append(time.perf_counter() - started)
                            break
                waiter = asyncio.create_task(client.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=30"))
                await asyncio.sleep(0.05)  # lead time for the request to reach the worker (not a sync)
                async with db.write() as conn:
                    await touch(conn, pid, "canceled")
                    started = time.perf_counter()
                answer = await asyncio.wait_for(waiter, 35)
                if answer.json()["status"] == "canceled":
                    out["long-poll"].append(time.perf_counter() - started)
    finally:
        await db.dispose()
    return out


def measure(database_url: str, data_dir: Path, samples: int) -> dict[str, dict[str, float]]:
    creds = make_merchant(database_url)
    with start_gateway(database_url, data_dir, name="realtime", PAYGATE_RUN_BACKGROUND="0") as gateway:
        results = asyncio.run(_measure(gateway.base_url, database_url, creds, samples))
    return {mode: {"n": len(v), "p50_ms": _pct(v, 50) * 1000, "p99_ms": _pct(v, 99) * 1000,
                   "mean_ms": statistics.fmean(v) * 1000} for mode, v in results.items()}


def test_status_changes_reach_clients_of_another_process_quickly(database_url: str, tmp_path: Path) -> None:
    numbers = measure(database_url, tmp_path, samples=25)
    print(numbers)
    for mode, stats in numbers.items():
        assert stats["n"] >= 20, (mode, stats)
        assert stats["p99_ms"] < 1000, (mode, stats)


def main() -> None:
    import os

    from tests.support.databases import drop_database, migrate, new_database_url

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if os.environ.get("PAYGATE_TEST_DATABASE_URL") else [])
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            url = new_database_url(backend, Path(tmp))
            migrate(url)
            try:
                numbers = measure(url, Path(tmp), args.samples)
            finally:
                drop_database(url)
        for mode, s in numbers.items():
            print(f"{backend:<10} {mode:<9} n={s['n']:<4} p50={s['p50_ms']:6.1f} ms  p99={s['p99_ms']:6.1f} ms  "
                  f"mean={s['mean_ms']:6.1f} ms")


if __name__ == "__main__":
    main()
