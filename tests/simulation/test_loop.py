"""The simulation's event loop: virtual time, statements waited for, crashes at a turn."""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text

from paygate_server.simulation.loop import SimulatedCrash, SimulatedLoop, Stalled
from paygate_server.storage import create_database


def test_time_jumps_to_the_next_timer() -> None:
    loop = SimulatedLoop(start_s=100.0)
    started = time.monotonic()
    try:
        loop.run_until_complete(asyncio.sleep(86_400 * 3))
        assert loop.time() == pytest.approx(100.0 + 86_400 * 3)
    finally:
        loop.close()
    assert time.monotonic() - started < 5  # three virtual days, no real wait


def test_waiting_on_nothing_stalls_instead_of_hanging() -> None:
    loop = SimulatedLoop()
    try:
        with pytest.raises(Stalled, match="nothing can wake"):
            loop.run_until_complete(loop.create_future())
    finally:
        loop.close()


def test_a_crash_at_a_turn_stops_the_loop_there() -> None:
    loop = SimulatedLoop()
    reached: list[int] = []

    async def counting() -> None:
        for i in range(100):
            reached.append(i)
            await asyncio.sleep(1)

    loop.crash_at_turn = 10
    try:
        with pytest.raises(SimulatedCrash):
            loop.run_until_complete(counting())
        assert 0 < len(reached) < 100
        assert loop.turns == 10
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


@pytest.mark.parametrize("threadless", [False, True], ids=["aiosqlite", "gateway"])
def test_database_results_come_back_in_the_order_they_were_asked(tmp_path: Path, threadless: bool) -> None:
    """Concurrent statements on several connections: the same interleaving every run, with
    aiosqlite's threads and with the gateway's connections (storage/loop_sqlite.py), whose
    worker-thread calls the simulated loop runs at once: they start no thread."""
    path = tmp_path / "order.db"
    threads_before = threading.active_count()

    async def run() -> list[tuple[int, int]]:
        db = create_database(f"sqlite:///{path}", async_creator=None if threadless else lambda: aiosqlite.connect(path))
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            await conn.execute(text("DELETE FROM t"))
        seen: list[tuple[int, int]] = []

        async def worker(i: int) -> None:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": i})
            async with db.read() as conn:
                seen.append((i, (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()))

        await asyncio.gather(*(worker(i) for i in range(12)))
        if threadless:
            assert threading.active_count() == threads_before
        await db.dispose()
        return seen

    runs = []
    for _ in range(3):
        loop = SimulatedLoop()
        try:
            runs.append(loop.run_until_complete(run()))
        finally:
            loop.close()
    assert runs[0] == runs[1] == runs[2]
    assert sorted(i for i, _ in runs[0]) == list(range(12))
