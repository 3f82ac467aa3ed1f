"""Checkout endpoints served by the gateway under ``/checkout/v1``."""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.http.api import json_response

__all__ = ["routes"]


async def jwks(request: Request) -> Response:
    """The public keys browsers (and ``encrypt_card``) encrypt card data to."""
    store = request.state.gateway.services["card_keys"]
    return json_response(200, store.jwks(), headers={
        "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*",
    })


routes = [Route("/checkout/v1/keys", jwks, methods=["GET"])]
