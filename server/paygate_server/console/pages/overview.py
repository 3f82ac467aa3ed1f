"""``GET /``: the overview (SPEC §12 "Overview") — the last hour, cluster-wide, from
:func:`paygate_server.storage.console_reads.overview` (every worker's and host's payments
and samples, never one process's counters).

The page states the hour's totals as numbers (it says something without script), and
holds one empty box per chart; ``static/overview.js`` fetches ``GET /overview.json`` (the
same read, column by column as uPlot takes it) and draws and refreshes the charts. No
inline script: the console's CSP allows only its own files.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paygate_server.console.roles import can
from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import console_of, page, render, signed_in_of
from paygate_server.storage.console_reads import Overview, overview

__all__ = ["Totals", "overview_json", "routes", "series", "totals"]

REFRESH_SECONDS = 10


@dataclass(frozen=True, slots=True)
class Totals:
    """The hour in numbers (the page's text; the charts show the minutes)."""
    payments: int  # charges and authorizations settled: approved, failed or unknown
    approved: int
    failed: int
    unknown: int
    success_rate: float | None  # approved / (approved + failed); None: none decided
    reconcile_backlog: int | None  # the latest sample; None: no worker sampled this hour
    webhook_backlog: int | None
    late_outcomes_open: int  # now: settled outcomes a processor contradicted, not yet handled
    p50_ms: float | None  # the latest minute with requests
    p99_ms: float | None


def _latest(values: list[Any]) -> Any:
    return next((value for value in reversed(values) if value is not None), None)


def totals(view: Overview) -> Totals:
    approved = sum(m.succeeded + m.requires_capture for m in view.outcomes)
    failed = sum(m.failed for m in view.outcomes)
    unknown = sum(m.unknown for m in view.outcomes)
    busy = [m for m in view.latency if m.requests]
    return Totals(payments=approved + failed + unknown, approved=approved, failed=failed, unknown=unknown,
                  success_rate=approved / (approved + failed) if approved + failed else None,
                  reconcile_backlog=_latest([b.reconcile for b in view.backlogs]),
                  webhook_backlog=_latest([b.webhooks for b in view.backlogs]),
                  late_outcomes_open=view.late_outcomes_open,
                  p50_ms=busy[-1].p50_ms if busy else None, p99_ms=busy[-1].p99_ms if busy else None)


def series(view: Overview) -> dict[str, Any]:
    """The overview column by column (uPlot's data: x first, then one array per series)."""
    return {
        "minutes": view.minutes,
        "outcomes": {name: [getattr(m, name) for m in view.outcomes]
                     for name in ("succeeded", "requires_capture", "captured", "canceled", "failed", "unknown")},
        "success_rate": [None if m.success_rate is None else round(m.success_rate * 100, 2)
                         for m in view.success_rate],
        "latency": {"p50_ms": [m.p50_ms for m in view.latency], "p99_ms": [m.p99_ms for m in view.latency]},
        "routes": {route: {"approved": [m.approved for m in minutes], "declined": [m.declined for m in minutes],
                           "unknown": [m.unknown for m in minutes]} for route, minutes in view.routes.items()},
        "backlogs": {"reconcile": [m.reconcile for m in view.backlogs],
                     "webhooks": [m.webhooks for m in view.backlogs]},
    }


@page("read")
async def overview_page(request: Request, signed_in: SignedIn) -> Response:
    view = await overview(console_of(request).gateway.db)
    return render(request, "overview.html", signed_in, totals=totals(view), routes=sorted(view.routes),
                  refresh_seconds=REFRESH_SECONDS)


async def overview_json(request: Request) -> Response:
    """The charts' data. A script's request: no session is a 401 it can show, not a redirect."""
    # The page's script polls by itself: no operator activity, the idle deadline stands.
    signed_in = await signed_in_of(request, activity=False)
    if signed_in is None:
        return JSONResponse({"error": "signed_out", "message": "Your session has ended: log in again."},
                            status_code=401)
    if not can(signed_in.role, "read"):  # as page("read") asks: a role the table does not know may nothing
        return JSONResponse({"error": "forbidden", "message": "Your role cannot open this page."}, status_code=403)
    view = await overview(console_of(request).gateway.db)
    summary = totals(view)
    return JSONResponse({**series(view), "totals": asdict(summary),
                         "refresh_seconds": REFRESH_SECONDS})


routes = [Route("/", overview_page, methods=["GET"]), Route("/overview.json", overview_json, methods=["GET"])]
