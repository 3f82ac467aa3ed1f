"""A processor's ``Retry-After`` on a "nothing done, try again" (Stripe's 429): read off the
wire by the HTTP client, carried by the connector's RETRY result, and honoured by the
request path's retries (processing/calls.py) within the operation's deadline — never asked
again sooner, and not at all when the wait is past the deadline (the operation is then the
reconciler's, as any RETRY left at the end)."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import pytest

from paygate_server.processing.calls import call_by
from paygate_server.processing.connectors import CaptureRequest, ChargeOutcome, ChargeResult
from paygate_server.processing.connectors.stripe import StripeConnector
from tests.support.http_stub import Raw, Seen, StubServer

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcomes readable
_RATE_LIMITED = orjson.dumps({"error": {"type": "invalid_request_error", "code": "rate_limit",
                                        "message": "Too many requests"}})


def _answer_429(retry_after: str | None) -> Raw:
    head = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    if retry_after is not None:
        head += f"Retry-After: {retry_after}\r\n"
    return Raw((head + f"Content-Length: {len(_RATE_LIMITED)}\r\n\r\n").encode() + _RATE_LIMITED)


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("0", 0.0), (None, None), ("99999999999", 3600.0),
                                                 ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-1", None)])
async def test_stripes_retry_after_reaches_the_result(header: str | None, seconds: float | None) -> None:
    def handler(seen: Seen) -> Raw:
        return _answer_429(header)

    async with StubServer(handler) as stub, StripeConnector("sk_test_x", "whsec_x", api_base=stub.url) as stripe:
        result = await stripe.capture(CaptureRequest("cap_1", "txn_1", 1000, "USD", charge_processor_id="pi_1"))
    assert (result.outcome, result.retry_after_s) == (O.RETRY, seconds)


def _retrying(retry_after_s: float | None, calls: list[float]) -> Callable[[], Awaitable[ChargeResult]]:
    async def call() -> ChargeResult:
        calls.append(asyncio.get_running_loop().time())
        return ChargeResult("ref_1", O.RETRY, message="rate limited", retry_after_s=retry_after_s)
    return call


async def test_a_retry_waits_what_the_processor_asked() -> None:
    calls: list[float] = []
    deadline = asyncio.get_running_loop().time() + 5.0
    result = await call_by(deadline, _retrying(0.4, calls), ChargeResult("ref_1", O.UNKNOWN),
                           retry_delays=(0.05, 0.05))
    assert result.outcome is O.RETRY and len(calls) == 3
    assert all(later - earlier >= 0.4 for earlier, later in zip(calls, calls[1:], strict=False))


async def test_a_wait_past_the_deadline_is_not_cut_short() -> None:
    """Asked to wait 10 s with 1 s left: not asked again before then — the RETRY is the result
    at once (the reconciler takes the operation over), not an early call, nor a sleep into
    the deadline."""
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    result = await call_by(deadline, _retrying(10.0, calls), ChargeResult("ref_1", O.UNKNOWN),
                           retry_delays=(0.05, 0.05))
    assert (result.outcome, len(calls)) == (O.RETRY, 1)
    assert loop.time() < deadline


async def test_without_retry_after_the_own_back_off_is_kept() -> None:
    calls: list[float] = []
    deadline = asyncio.get_running_loop().time() + 5.0
    result = await call_by(deadline, _retrying(None, calls), ChargeResult("ref_1", O.UNKNOWN),
                           retry_delays=(0.05, 0.1))
    assert result.outcome is O.RETRY and len(calls) == 3
