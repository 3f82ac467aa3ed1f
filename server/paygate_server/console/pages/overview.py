"""``GET /``: the overview. For now a shell that says what it will show (SPEC §12: live
charts of the last hour); the overview's charts replace its body."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import page, render

__all__ = ["routes"]


@page("read")
async def overview(request: Request, signed_in: SignedIn) -> Response:
    return render(request, "overview.html", signed_in)


routes = [Route("/", overview, methods=["GET"])]
