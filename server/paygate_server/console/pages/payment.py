"""``GET /payments/{pi_…}``: one payment's page (SPEC §12 "Payments").

Its status and amounts, its whole timeline (the change history the API's ``…/history``
serves, the archived part included: ``cdc.timeline.whole_timeline``), its attempts at the
processor, refunds, webhook events and their deliveries, what operators did to it, and the
action forms the operator's role allows (pages/payment_actions.py handles them). Card data
is the brand and last 4 only: the reads hold nothing more.

Each action form carries an idempotency key made when the page is rendered: submitting
the same form twice (a double click, a reload of the answer) is one operation.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.cdc.archive import ArchiveProblem
from paygate_server.cdc.timeline import HistoryGap, whole_timeline
from paygate_server.console.actions import recent_actions
from paygate_server.console.pages.activity import facts
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import console_of, error_page, page, render
from paygate_server.errors import ApiError
from paygate_server.intents.history import render_history
from paygate_server.storage.console_reads import PaymentDetail, payment_detail
from paygate_server.validation import require_id

__all__ = ["Notice", "intent_id_of", "payment_view", "routes"]

log = logging.getLogger("paygate.console")

ACTIONS_SHOWN = 50
# Operations whose outcome the processor has not given yet: "ask the processor now".
UNSETTLED = frozenset({"pending", "unknown"})
CANCELABLE = frozenset({"created", "failed", "requires_capture"})


@dataclass(frozen=True, slots=True)
class Notice:
    """What an action did (or why it did nothing), shown at the top of the page."""
    message: str
    failed: bool = False


def intent_id_of(request: Request) -> str | None:
    """The path's payment id, or None when it cannot be one (it names nothing then)."""
    try:
        return require_id(request.path_params["intent_id"], "paymentIntentId", "pi")
    except ApiError:
        return None


def _missing(request: Request, signed_in: SignedIn) -> Response:
    return error_page(request, signed_in, 404, "There is no such payment: check its id (pi_…), or find it from "
                                               "the Payments search.")


async def _timeline(request: Request, intent_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """The history's events, or none and why (never a shortened history shown as whole)."""
    gateway = console_of(request).gateway
    store = gateway.archive_store if gateway.has("archive_store") else None
    try:
        changes = await whole_timeline(gateway.db, intent_id, store)
    except HistoryGap as exc:
        log.error("history of %s: %s", intent_id, exc)
        return [], "This payment's history is incomplete (a gap in the change log): see the console's log."
    except (ArchiveProblem, OSError, RuntimeError, httpx.HTTPError) as exc:
        log.error("history of %s: the archive cannot be read (%s)", intent_id, exc.__class__.__name__)
        return [], "The archived part of this payment's history cannot be read now: reload in a moment."
    return render_history(changes), None


def _keys() -> dict[str, str]:
    """A fresh idempotency key per action form."""
    return {name: secrets.token_urlsafe(18) for name in ("refund", "capture", "cancel")}


async def payment_view(request: Request, signed_in: SignedIn, detail: PaymentDetail, *, status: int = 200,
                       notice: Notice | None = None, typed: dict[str, str] | None = None) -> Response:
    """The payment's page as it is now, with ``notice`` (an action's result) on top."""
    intent = detail.intent
    events, timeline_problem = await _timeline(request, intent.id)
    actions = await recent_actions(console_of(request).gateway.db, limit=ACTIONS_SHOWN, target=intent.id)
    return render(request, "payment.html", signed_in, status=status, detail=detail, intent=intent,
                  events=events, timeline_problem=timeline_problem,
                  actions=[(row, facts(row.detail)) for row in actions], notice=notice, keys=_keys(),
                  typed=typed or {}, unsettled=UNSETTLED,
                  refundable=intent.amount_received - intent.amount_refunded,
                  can_refund=intent.status == "succeeded" and intent.amount_received > intent.amount_refunded,
                  can_capture=intent.status == "requires_capture",
                  can_cancel=intent.status in CANCELABLE)


@page("read")
async def payment_page(request: Request, signed_in: SignedIn) -> Response:
    intent_id = intent_id_of(request)
    detail = None if intent_id is None else await payment_detail(console_of(request).gateway.db, intent_id)
    if detail is None:
        return _missing(request, signed_in)
    return await payment_view(request, signed_in, detail)


routes = [Route("/payments/{intent_id}", payment_page, methods=["GET"])]
