"""``wait_event`` never swallows a cancellation (the 3.11 ``wait_for`` race it replaces)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from paygate_server.waiting import wait_event

Waiter = Callable[[asyncio.Event, float], Awaitable[object]]


async def wait_for_event(event: asyncio.Event, timeout: float) -> None:
    """The pattern every background loop used before ``wait_event``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def poll_loop(wake: asyncio.Event, wait: Waiter) -> None:
    while True:
        wake.clear()
        await wait(wake, 0.02)


async def survives_cancel_when_woken(wait: Waiter) -> bool:
    """Wake the loop, then cancel it in the same iteration (a delivery finished while the
    gateway shuts down). True if the loop ignored the cancellation."""
    wake = asyncio.Event()
    task = asyncio.create_task(poll_loop(wake, wait))
    await asyncio.sleep(0.03)
    wake.set()
    await asyncio.sleep(0)  # the inner event.wait() completes
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True
    return False


async def test_the_3_11_wait_for_race_is_real_here() -> None:
    """Keeps the reason for ``wait_event`` honest: on 3.11 ``wait_for`` loses the cancel."""
    import sys
    if sys.version_info >= (3, 12):
        pytest.skip("CPython 3.12 fixed wait_for (gh-86296); the race exists only on 3.11")
    assert await survives_cancel_when_woken(wait_for_event)


async def test_wait_event_always_lets_a_cancellation_through() -> None:
    for _ in range(20):
        assert not await survives_cancel_when_woken(wait_event)


async def test_wait_event_reports_set_or_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


def test_no_server_code_waits_with_wait_for() -> None:
    from pathlib import Path

    import paygate_server
    root = Path(paygate_server.__file__).parent
    users = [str(p.relative_to(root)) for p in root.rglob("*.py") if "asyncio.wait_for(" in p.read_text()]
    assert users == [], f"use paygate_server.waiting.wait_event or asyncio.timeout instead: {users}"
