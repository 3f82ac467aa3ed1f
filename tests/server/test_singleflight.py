"""SingleFlight: concurrent misses of one key share one read; cancellation and errors."""
from __future__ import annotations

import asyncio

import pytest

from paygate_server.singleflight import SingleFlight


async def test_concurrent_callers_share_one_read_per_key() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    reads: list[str] = []
    gate = asyncio.Event()

    async def load(key: str) -> str:
        reads.append(key)
        await gate.wait()
        return key.upper()

    callers = [asyncio.create_task(flight.run(k, lambda k=k: load(k))) for k in ("a", "a", "b", "a")]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*callers) == ["A", "A", "B", "A"]
    assert sorted(reads) == ["a", "b"]
    # Done: the next miss reads again (the caller's cache decides when to ask).
    assert await flight.run("a", lambda: load("a")) == "A"
    assert sorted(reads) == ["a", "a", "b"]


async def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    reads = 0

    async def load() -> int:
        nonlocal reads
        reads += 1
        await gate.wait()
        return 7

    first = asyncio.create_task(flight.run("k", load))
    second = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await second == 7
    assert first.cancelled() and reads == 1


async def test_an_error_reaches_every_caller_and_is_not_remembered() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("database down")

    results = await asyncio.gather(flight.run("k", failing), flight.run("k", failing), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError] and calls == 1

    async def ok() -> int:
        return 1

    assert await flight.run("k", ok) == 1


async def test_the_answer_is_kept_by_the_load_even_when_every_caller_left() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    stored: dict[str, int] = {}
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        stored["k"] = 3  # what a cache's read does with its answer
        return 3

    caller = asyncio.create_task(flight.run("k", load))
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert stored == {"k": 3}
