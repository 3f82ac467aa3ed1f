"""SingleFlight: concurrent misses of one key share one read; cancellation and errors.
ExpiringCache: what it keeps, for how long, and its bound."""
from __future__ import annotations

import asyncio

import pytest

from paygate_server.singleflight import ExpiringCache, SingleFlight


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


async def test_the_cache_keeps_an_answer_for_its_ttl_from_when_it_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("paygate_server.singleflight.time.monotonic", lambda: clock[0])
    reads: list[str] = []

    async def read(key: str) -> str:
        reads.append(key)
        clock[0] += 0.5  # a slow read: the answer's age counts from the ask, not from its end
        return f"{key}{len(reads)}"

    cache: ExpiringCache[str, str] = ExpiringCache(1.0, read)
    assert await cache.get("a") == "a1"
    assert await cache.get("a") == "a1" and reads == ["a"]  # 100.5 < 101: kept
    clock[0] = 101.0
    assert await cache.get("a") == "a2"  # expired at 101 exactly
    assert await cache.get("b") == "b3" and reads == ["a", "a", "b"]


async def test_a_cache_with_no_ttl_reads_every_time() -> None:
    reads = 0

    async def read(key: str) -> int:
        nonlocal reads
        reads += 1
        return reads

    cache: ExpiringCache[str, int] = ExpiringCache(0.0, read)
    assert [await cache.get("a") for _ in range(3)] == [1, 2, 3]


async def test_concurrent_misses_share_one_read_and_the_bound_starts_the_cache_over() -> None:
    reads: list[int] = []
    gate = asyncio.Event()

    async def read(key: int) -> int:
        reads.append(key)
        await gate.wait()
        return key * 10

    cache: ExpiringCache[int, int] = ExpiringCache(60.0, read, max_entries=2)
    callers = [asyncio.create_task(cache.get(1)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*callers) == [10, 10, 10] and reads == [1]
    for key in (2, 3):  # three kept: at the bound, not past it
        await cache.get(key)
    await cache.get(1)
    assert reads == [1, 2, 3]
    await cache.get(4)  # past the bound: the cache starts over, then keeps 4
    await cache.get(1)
    await cache.get(4)
    assert reads == [1, 2, 3, 4, 1]
