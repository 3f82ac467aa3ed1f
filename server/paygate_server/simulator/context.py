"""What every simulator handler shares: the process-wide state, reading a body, answering
(and "losing" an answer), and the faults every operation goes through."""

from __future__ import annotations

import asyncio
import logging
import random
import string
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from paygate_server import jsoncodec

from .clock import SimClock
from .faults import FaultDecision, FaultInjector
from .protocol import MAX_BODY_BYTES, ProtocolError, rfc3339
from .store import Store

__all__ = [
    "ConnectionDropped",
    "DroppedResponse",
    "JSONResponse",
    "Simulator",
    "answer",
    "charge_not_found",
    "install_log_filter",
    "processing_error",
    "read_body",
    "reference_conflict",
    "sim",
]

_AUTH_ALPHABET = string.ascii_uppercase + string.digits


class ConnectionDropped(Exception):
    """Raised after a partial response so that the server closes the connection.

    This is how the simulator "loses" an answer (card 4000000000001026,
    ``dropResponseRate``): the response head and part of the body are written, then the
    ASGI app fails; uvicorn can only close the transport, and the client sees the
    connection end before the promised ``Content-Length``.
    """


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        return not (exc and isinstance(exc[1], ConnectionDropped))


_DROP_FILTER = _DropFilter()


def install_log_filter() -> None:
    # addFilter ignores a filter that is already installed, so this is idempotent.
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)


class DroppedResponse(Response):
    def __init__(self) -> None:  # no body to render
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"reference":', "more_body": True})
        raise ConnectionDropped("response dropped on purpose")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content)


def answer(body: dict[str, Any], *, replayed: bool) -> JSONResponse:
    response = JSONResponse(body)
    if replayed:  # the same reference again: the first answer, marked as a replay
        response.headers["Idempotent-Replayed"] = "true"
    return response


@dataclass(slots=True)
class Simulator:
    """Process-wide state, reachable from handlers as ``request.app.state.simulator``."""

    store: Store
    faults: FaultInjector
    rng: random.Random
    slow_card_delay_s: float
    clock: SimClock

    def auth_code(self) -> str:
        return "".join(self.rng.choices(_AUTH_ALPHABET, k=6))

    def now(self) -> str:
        """The simulator clock's time, as records stamp it."""
        return rfc3339(self.clock.now())

    async def draw_faults(self) -> FaultDecision:
        """This request's faults; the latency is spent here, before any processing."""
        fault = self.faults.draw()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        return fault

    async def deliver(
        self, fault: FaultDecision, body: dict[str, Any], *, replayed: bool
    ) -> Response:
        """Answer a recorded operation through the faults drawn for it: late
        (``timeoutRate``) or lost (``dropResponseRate``), replays included."""
        if fault.timeout:
            await asyncio.sleep(self.slow_card_delay_s)
        if fault.drop:
            return DroppedResponse()
        return answer(body, replayed=replayed)


def sim(request: Request) -> Simulator:
    return request.app.state.simulator  # type: ignore[no-any-return]


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ProtocolError(413, "body_too_large", "request body is larger than 64 KiB")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ProtocolError(413, "body_too_large", "request body is larger than 64 KiB")
            chunks.append(chunk)
    except ClientDisconnect:
        # Closed mid-body (the client left, or headerguard's body timeout): the gateway's
        # answer (http/api.py), not a 500 with a traceback in the simulator's log.
        raise ProtocolError(400, "invalid_json", "the connection closed before the request body was complete") from None
    return b"".join(chunks)


def processing_error() -> ProtocolError:
    """An injected ``errorRate`` fault on a new reference: nothing was recorded."""
    return ProtocolError(
        500, "processing_error", "the processor failed; nothing was recorded", retryable=False
    )


def reference_conflict(operation: str) -> ProtocolError:
    """A reference already used for another ``operation`` (a charge, refund, capture or
    void). Deliberately no "retryable": the reference has a result, just not for this."""
    message = f"this reference was already used for a {operation} with different details"
    return ProtocolError(409, "reference_conflict", message, param="reference", retryable=None)


def charge_not_found() -> ProtocolError:
    """A refund, capture or void whose ``chargeReference`` names no recorded charge."""
    message = "no charge was recorded with this chargeReference"
    return ProtocolError(404, "charge_not_found", message, param="chargeReference")
