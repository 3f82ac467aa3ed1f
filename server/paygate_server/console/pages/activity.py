"""``GET /activity``: what operators did, newest first, a page at a time (keyset on the
action's id: ``?before=<id>``), optionally only on one target (``?target=pi_…``)."""
from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.console.actions import recent_actions
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import console_of, error_page, page, render

__all__ = ["PAGE_SIZE", "facts", "routes"]

PAGE_SIZE = 50
_MAX_TARGET = 64


def facts(detail: str | None) -> str:
    """The detail's facts as ``name=value`` pairs for the table."""
    if not detail:
        return ""
    try:
        parsed = json.loads(detail)
    except ValueError:
        return ""
    return ", ".join(f"{name}={value}" for name, value in parsed.items()) if isinstance(parsed, dict) else ""


@page("read")
async def activity(request: Request, signed_in: SignedIn) -> Response:
    before_raw = request.query_params.get("before", "")
    target = request.query_params.get("target", "").strip() or None
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses (a 500).
    if before_raw and (not (before_raw.isascii() and before_raw.isdigit()) or len(before_raw) > 18):
        return error_page(request, signed_in, 400, "That page of the activity does not exist: start again from "
                                                   "the first page.")
    if target is not None and len(target) > _MAX_TARGET:
        return error_page(request, signed_in, 400, f"A target is an id of at most {_MAX_TARGET} characters.")
    rows = await recent_actions(console_of(request).gateway.db, limit=PAGE_SIZE + 1,
                                before_id=int(before_raw) if before_raw else None, target=target)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(request, "activity.html", signed_in, actions=[(row, facts(row.detail)) for row in rows],
                  target=target or "", next_before=rows[-1].id if more else None, first_page=not before_raw)


routes = [Route("/activity", activity, methods=["GET"])]
