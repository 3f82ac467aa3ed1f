"""The polling helper: it returns the first acceptable answer, and fails with the last one seen."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.support.eventually import eventually, eventually_sync


async def test_returns_the_first_acceptable_answer_of_an_async_probe() -> None:
    answers = iter([0, 1, 2, 3, 4])

    async def probe() -> int:
        return next(answers)

    assert await eventually(probe, until=lambda n: n >= 2, interval=0) == 2
    assert next(answers) == 3  # not asked again once satisfied


async def test_a_sync_probe_in_an_async_test_sees_other_tasks_progress() -> None:
    seen: list[int] = []

    async def producer() -> None:
        for n in range(3):
            seen.append(n)
            await asyncio.sleep(0)

    task = asyncio.create_task(producer())
    assert await eventually(lambda: len(seen) == 3, timeout=5)
    await task


async def test_times_out_with_what_and_the_last_value() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        await eventually(lambda: {"status": "in_progress"}, until=lambda s: s["status"] == "succeeded",
                         timeout=0.1, interval=0.01, what="the payment to settle")
    assert time.monotonic() - started >= 0.1
    message = str(failure.value)
    assert "the payment to settle" in message and "{'status': 'in_progress'}" in message


async def test_a_falsy_answer_is_not_enough_without_until() -> None:
    with pytest.raises(AssertionError, match=r"last value seen: \[\]"):
        await eventually(lambda: [], timeout=0.05, interval=0.01)


def test_sync_variant_waits_on_another_thread() -> None:
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    assert eventually_sync(flag.is_set, timeout=5, what="the flag") is True


def test_sync_variant_fails_with_the_last_value() -> None:
    with pytest.raises(AssertionError, match="waiting for the row.*last value seen: None"):
        eventually_sync(lambda: None, timeout=0.05, interval=0.01, what="the row")


def test_the_last_value_is_cut_short() -> None:
    with pytest.raises(AssertionError) as failure:
        eventually_sync(lambda: "x" * 5000, until=lambda s: False, timeout=0, interval=0)
    assert len(str(failure.value)) < 1000
