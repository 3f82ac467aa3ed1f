"""Waiting on an event with a time limit, without ever swallowing a cancellation.

Python 3.11's ``asyncio.wait_for`` runs the awaited coroutine in a task of its own. When
the caller is cancelled in the same loop iteration that this inner task finishes (an
event set by one callback, the caller cancelled by another), ``wait_for`` returns the
result and the cancellation is lost (CPython gh-86296, fixed in 3.12). A background loop
that waits this way then survives ``task.cancel()``, and a shutdown that gathers it hangs
for ever. ``asyncio.timeout`` awaits in the caller's own task, so a cancellation always
arrives; every bounded wait in the server goes through it.
"""
from __future__ import annotations

import asyncio

__all__ = ["wait_event"]


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """True once ``event`` is set, False if ``timeout`` seconds pass first."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
