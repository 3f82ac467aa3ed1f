"""One hard deadline for every processor call of an operation that moves money (a charge,
authorization, capture, void or refund), counted from before the operation is begun.

The reconciler takes an operation over once its in-flight grace has passed, counted from
its row's ``created_at`` (``Settings.in_flight_grace_s``: the attempt deadline + 2 s): a
charge the processor has not heard of is then "never received", and a capture, void or
refund is sent again. That holds only if no call for the operation can still reach the
processor by then. So the deadline starts before the operation is begun — what the store,
the commit and the look-up of the account take comes out of it, not on top of it — a call
whose deadline has passed is not made, and one given up on is reset rather than closed
(``http1client.HttpConnection.abort``: the request's bytes go with it).

The request path's calls go through :func:`call_at_processor`, where the crash tests'
points around the processor are (``faults.py``): during the call, and — for a capture,
void or refund — once the processor has answered and nothing of its answer is recorded.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from paygate_server.config import Settings
from paygate_server.faults import crash_point, dying_mid_call
from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeResult,
    RefundResult,
    is_definitive,
)

__all__ = ["DEADLINE_PASSED", "call_at_processor", "call_by", "deadline_for"]

Result = TypeVar("Result", ChargeResult, RefundResult)
# The message of the unknown result a call past its deadline stands for.
DEADLINE_PASSED = "attempt deadline passed"


def deadline_for(settings: Settings) -> float:
    """The loop time by which every call of an operation about to be begun must be over:
    taken before the store stamps its row, so the window the reconciler counts from that
    stamp can only be longer."""
    return asyncio.get_running_loop().time() + settings.attempt_deadline_s


async def call_by(deadline: float, call: Callable[[], Awaitable[Result]], unknown: Result,
                  retry_delays: Sequence[float] = ()) -> Result:
    """``call()`` — again after each of ``retry_delays`` while the processor answers "nothing
    done, retry" (the same reference: never twice) — or ``unknown`` once ``deadline`` has
    passed; not called at all if it has passed already. A processor that says how long to
    wait (its ``Retry-After``: ``retry_after_s``) is not asked again sooner; when that is past
    the deadline it is not asked again at all, and its "retry" is the result (the caller
    leaves the operation to the reconciler)."""
    loop = asyncio.get_running_loop()
    if loop.time() >= deadline:
        return unknown
    try:
        async with asyncio.timeout_at(deadline):
            result = await call()
            for delay in retry_delays:
                if result.outcome is not ChargeOutcome.RETRY:
                    break
                wait = max(delay, result.retry_after_s or 0.0)
                if loop.time() + wait >= deadline:
                    break
                await asyncio.sleep(wait)
                result = await call()
            return result
    except TimeoutError:
        return unknown


async def call_at_processor(settings: Settings, deadline: float, call: Callable[[], Awaitable[Result]],
                            unknown: Result, retry_delays: Sequence[float] = (), *,
                            answered_point: str | None = None) -> Result:
    """:func:`call_by` for a request, with two crash points (each fires only when it is the
    configured ``fault_point``): ``during_processor_call`` with the call under way, and
    ``answered_point`` once the processor said yes or no — money moved or refused, the
    gateway's record still ``pending``. (A charge's own point is its caller's: after
    failover, and only if approved.)"""
    with dying_mid_call(settings.fault_point):
        result = await call_by(deadline, call, unknown, retry_delays)
    if answered_point is not None and is_definitive(result.outcome):
        crash_point(settings.fault_point, answered_point)
    return result
