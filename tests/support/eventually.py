"""Wait for a condition, with a deadline: the one helper every test polls with.

A test that waits on another task, thread or process asks a *probe* again and again until
its answer is acceptable, and fails with the last answer it saw once the deadline passes.
``eventually`` is for async tests (the probe may be sync or async), ``eventually_sync`` for
blocking ones (the browser tests); both share :class:`_Polls`, so the deadline, the test of
an answer and the failure message are written once.

The pause between probes only paces the polling: it never decides the outcome. A probe
that already waits by itself (a long-poll ``?wait=``, ``lease.acquire()``) can poll with
``interval=0``.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_TIMEOUT_S", "eventually", "eventually_sync"]

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 15.0
DEFAULT_INTERVAL_S = 0.02
_MAX_SHOWN = 800  # characters of the last value in a failure: enough to see why, not a page


class _Polls:
    """One wait: its deadline, the last value seen, and the message when it runs out."""

    def __init__(self, until: Callable[[Any], object] | None, timeout: float, what: str) -> None:
        self.until = until
        self.timeout = timeout
        self.what = what
        self.end = time.monotonic() + timeout
        self.probes = 0
        self.last: object = None

    def accepts(self, value: object) -> bool:
        self.probes += 1
        self.last = value
        return bool(self.until(value) if self.until is not None else value)

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def failure(self) -> AssertionError:
        shown = repr(self.last)
        if len(shown) > _MAX_SHOWN:
            shown = shown[:_MAX_SHOWN] + "..."
        return AssertionError(f"timed out after {self.timeout:g} s ({self.probes} probes) waiting for "
                              f"{self.what}; last value seen: {shown}")


@overload
async def eventually(probe: Callable[[], Awaitable[T]], *, until: Callable[[T], object] | None = None,
                     timeout: float = DEFAULT_TIMEOUT_S, interval: float = DEFAULT_INTERVAL_S,
                     what: str = "the condition") -> T: ...
@overload
async def eventually(probe: Callable[[], T], *, until: Callable[[T], object] | None = None,
                     timeout: float = DEFAULT_TIMEOUT_S, interval: float = DEFAULT_INTERVAL_S,
                     what: str = "the condition") -> T: ...
async def eventually(probe: Callable[[], Any], *, until: Callable[[Any], object] | None = None,
                     timeout: float = DEFAULT_TIMEOUT_S, interval: float = DEFAULT_INTERVAL_S,
                     what: str = "the condition") -> Any:
    """Call ``probe`` (awaiting its answer if it is awaitable) until ``until(answer)`` is true,
    or the answer itself is truthy when ``until`` is not given; return that answer.

    Raises ``AssertionError`` naming ``what`` and the last answer once ``timeout`` seconds
    have passed. The probe is always asked at least once, and last after the deadline has passed.
    """
    polls = _Polls(until, timeout, what)
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if polls.accepts(value):
            return value
        if polls.expired():
            raise polls.failure()
        await asyncio.sleep(interval)  # pacing the polls; the condition decides


def eventually_sync(probe: Callable[[], T], *, until: Callable[[T], object] | None = None,
                    timeout: float = DEFAULT_TIMEOUT_S, interval: float = DEFAULT_INTERVAL_S,
                    what: str = "the condition") -> T:
    """:func:`eventually` for blocking code: the probe is a plain function."""
    polls = _Polls(until, timeout, what)
    while True:
        value = probe()
        if polls.accepts(value):
            return value
        if polls.expired():
            raise polls.failure()
        time.sleep(interval)  # pacing the polls; the condition decides
