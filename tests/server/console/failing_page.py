"""A pages module whose page fails (for the console's error-page test)."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.console.sessions import SignedIn
from paygate_server.console.web import page


@page("read")
async def broken(request: Request, signed_in: SignedIn) -> Response:
    raise RuntimeError("card 4242424242424242 secret sk_test_abc")


routes = [Route("/broken", broken, methods=["GET"])]
