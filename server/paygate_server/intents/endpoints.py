"""HTTP endpoints for payment intents (SPEC §4)."""
from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.cdc.archive import ArchiveProblem
from paygate_server.cdc.timeline import HistoryGap, whole_timeline
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, api_endpoint, json_response
from paygate_server.intents import service
from paygate_server.intents.history import render_history
from paygate_server.intents.refusals import no_such_intent
from paygate_server.intents.schemas import (
    RESTING_STATUSES,
    STATUSES,
    parse_create,
    render_intent,
    render_status,
)
from paygate_server.storage.status_changes import StatusChanges
from paygate_server.validation import parse_int_param, require_id

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["routes", "load_intent", "watch_status", "intent_status_events", "sse_event"]

log = logging.getLogger("paygate.history")

MAX_WAIT_S = 60
STREAM_KEEPALIVE_S = 15.0


async def load_intent(ctx: ApiContext, intent_id: str) -> Any:
    row = await ctx.gateway.payments.get_intent(ctx.merchant_id, intent_id)
    if row is None:
        raise no_such_intent(intent_id)
    return row


async def create_intent(ctx: ApiContext) -> Response:
    data = parse_create(ctx.json_object(), ctx.merchant_id)
    created = await ctx.idempotently(lambda claim: service.create_intent(ctx.gateway.payments, ctx.merchant_id,
                                                                         data, claim))
    return await ctx.answer(201, created.answer, stored=True)


async def get_intent(ctx: ApiContext) -> Response:
    intent_id = require_id(ctx.request.path_params["intent_id"], "paymentIntentId", "pi")
    return json_response(200, render_intent(await load_intent(ctx, intent_id)))


async def list_intents(ctx: ApiContext) -> Response:
    limit = parse_int_param(ctx.query("limit"), "limit", default=10, minimum=1, maximum=100)
    status = ctx.query("status")
    if status is not None and status not in STATUSES:
        raise ApiError("parameter_invalid", f"status must be one of {', '.join(STATUSES)}", param="status")
    starting_after = ctx.query("startingAfter")
    if starting_after is not None:
        starting_after = require_id(starting_after, "startingAfter", "pi")
    rows, has_more = await ctx.gateway.payments.list_intents(
        ctx.merchant_id, limit=limit, starting_after=starting_after, status=status)
    return json_response(200, {"data": [render_intent(r) for r in rows], "hasMore": has_more})


async def watch_status(ctx: ApiContext, intent_id: str, wait_s: float) -> Any:
    """The intent now if final or ``requires_capture``, or once it changes, or after ``wait_s`` (SPEC §4 ``wait``)."""
    deadline = time.monotonic() + wait_s
    with ctx.gateway.notifier.subscribe(intent_id) as sub:
        row = await load_intent(ctx, intent_id)
        if wait_s <= 0 or row["status"] in RESTING_STATUSES:
            return row
        first_version = row["version"]
        while (remaining := deadline - time.monotonic()) > 0:
            if not await sub.wait(remaining):
                break
            row = await load_intent(ctx, intent_id)
            if row["version"] != first_version or row["status"] in RESTING_STATUSES:
                return row
        return await load_intent(ctx, intent_id)


async def payment_status(ctx: ApiContext) -> Response:
    intent_id = require_id(ctx.query("paymentIntentId"), "paymentIntentId", "pi")
    wait_s = parse_int_param(ctx.query("wait"), "wait", default=0, minimum=0, maximum=MAX_WAIT_S)
    return json_response(200, render_status(await watch_status(ctx, intent_id, wait_s)))


def sse_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\n".encode() + b"data: " + jsoncodec.dumps(data) + b"\n\n"


async def intent_status_events(gateway: Gateway, request: Request, merchant_id: str,
                               intent_id: str) -> AsyncIterator[bytes]:
    """One SSE event per status change, ending at a final status or ``requires_capture`` (SPEC §4). Shared by the
    API's stream and the checkout's (``/checkout/v1/status/stream``).

    The first event is the intent as the stream opens; after it, every status the intent
    went through, in order, each from the change that brought it (its row as that change
    left it): a wake-up reads the intent's changes after the last one seen
    (``storage/status_changes.py``, one statement), so changes between two wake-ups are
    never merged, and a change that keeps the status sends nothing. Changes pruned before the
    stream read them (docs/history.md "Retention") leave it the intent as it is now."""
    history = StatusChanges(gateway.db)

    async def start() -> tuple[Any, int, int]:
        found = await history.start(merchant_id, intent_id)
        if found is None:
            raise no_such_intent(intent_id)
        return found

    def event(row: Any) -> bytes:
        return sse_event("status", render_status(row), f"{intent_id}:{row['version']}")

    with gateway.notifier.subscribe(intent_id) as sub:
        row, seq, after_id = await start()
        status, guessed = row["status"], True  # after_id is the id sequence's position, not a change's
        yield event(row)
        while status not in RESTING_STATUSES:
            if not await sub.wait(STREAM_KEEPALIVE_S):
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            read = await history.after(intent_id, seq, after_id, guessed=guessed)
            rows = read.rows
            guessed, after_id = guessed and read.last_id == after_id, read.last_id
            if read.complete:
                seq = read.head_seq
            else:
                # Changes the stream had not read yet left the log (pruned: a retention
                # shorter than the stream's pause): what they were is not known here, the
                # ones after them and the intent as it is now are — a second statement, in
                # this case only.
                row, seq, after_id = await start()
                rows, guessed = [*rows, row], True
            for row in rows:
                if row["status"] != status:
                    status = row["status"]
                    yield event(row)
                    if status in RESTING_STATUSES:
                        return


def status_events(ctx: ApiContext, intent_id: str) -> AsyncIterator[bytes]:
    return intent_status_events(ctx.gateway, ctx.request, ctx.merchant_id, intent_id)


async def payment_status_stream(ctx: ApiContext) -> Response:
    intent_id = require_id(ctx.query("paymentIntentId"), "paymentIntentId", "pi")
    await load_intent(ctx, intent_id)  # 404 before the stream starts
    return StreamingResponse(
        status_events(ctx, intent_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def intent_history(ctx: ApiContext) -> Response:
    intent_id = require_id(ctx.request.path_params["intent_id"], "paymentIntentId", "pi")
    # The older part of a pruned history lives in the archive (read only when the database
    # no longer holds the intent's first change: cdc/timeline.py).
    gateway = ctx.gateway
    store = gateway.archive_store if gateway.has("archive_store") else None
    try:
        changes = await whole_timeline(gateway.db, intent_id, store, merchant_id=ctx.merchant_id)
    except HistoryGap as exc:  # never a shortened history: the operator must see this
        log.error("history of %s: %s", intent_id, exc)
        raise ApiError("internal_error", "the history of this intent is incomplete") from None
    except ArchiveProblem as exc:  # a segment it needs is missing or fails its checksum (our own words)
        log.error("history of %s: %s", intent_id, exc)
        raise ApiError("service_unavailable", "the archived history cannot be read now; retry later") from None
    except (OSError, RuntimeError, httpx.HTTPError) as exc:  # the folder or the bucket unreachable
        log.error("history of %s: the archive cannot be read (%s)", intent_id, exc.__class__.__name__)
        raise ApiError("service_unavailable", "the archived history cannot be read now; retry later") from None
    if not changes:
        await load_intent(ctx, intent_id)  # 404 unless the intent is the merchant's
        # It is, and neither place has any of its history: lost, not empty.
        log.error("history of %s: in neither the database nor the archive's index", intent_id)
        raise ApiError("internal_error", "the history of this intent is incomplete")
    return json_response(200, {"data": render_history(changes)})


routes = [
    Route("/api/v1/payment/intent", api_endpoint(create_intent), methods=["POST"]),
    Route("/api/v1/payment/intent/{intent_id}", api_endpoint(get_intent), methods=["GET"]),
    Route("/api/v1/payment/intent/{intent_id}/history", api_endpoint(intent_history), methods=["GET"]),
    Route("/api/v1/payment/intents", api_endpoint(list_intents), methods=["GET"]),
    Route("/api/v1/payment/status", api_endpoint(payment_status), methods=["GET"]),
    Route("/api/v1/payment/status/stream", api_endpoint(payment_status_stream), methods=["GET"]),
]

