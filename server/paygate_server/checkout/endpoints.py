"""Checkout endpoints served by the gateway under ``/checkout/v1`` (SPEC §5).

- ``GET  /checkout/v1/checkout.js``, ``/checkout/v1/static/*`` — the front-end's files;
- ``GET  /checkout/v1/keys`` — the JWKS browsers encrypt card data to;
- ``GET  /checkout/v1/frame?clientSecret=…`` — the card form, framable only by the
  merchant's registered origins (``Content-Security-Policy: frame-ancestors``);
- ``POST /checkout/v1/tokens`` — see :mod:`.tokens`;
- ``GET  /checkout/v1/status/stream?clientSecret=…`` — the intent's status as SSE.

Everything here is authenticated by the clientSecret alone: no cookies, no API key.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from paygate_checkout import (
    FrameContext,
    FrameUnavailable,
    checkout_static_routes,
    is_valid_origin,
    serve_frame,
)
from paygate_server.checkout.tokens import (
    MAX_TOKENIZATIONS,
    TOO_MANY_ATTEMPTS,
    create_token,
    intent_of,
    state_error,
)
from paygate_server.errors import ApiError
from paygate_server.http.api import error_response, json_response
from paygate_server.http.middleware import request_id_of
from paygate_server.intents.endpoints import intent_status_events
from paygate_server.merchants import get_merchant, list_origins
from paygate_server.storage.checkout import merchant_is_live

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["frame_context", "routes"]


async def jwks(request: Request) -> Response:
    """The public keys browsers (and ``encrypt_card``) encrypt card data to."""
    gateway: Gateway = request.state.gateway
    return json_response(200, gateway.card_keys.jwks(),
                         headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})


async def frame_context(gateway: Gateway, client_secret: str) -> FrameContext | None:
    """What the frame shows for a clientSecret; None if it names no intent."""
    try:
        intent, tokenizations = await intent_of(gateway, client_secret)
    except ApiError:
        return None
    merchant_id = intent["merchant_id"]
    async with gateway.db.read() as conn:
        merchant = await get_merchant(conn, merchant_id)
        # Origins are normalized when registered; anything a browser would not write as
        # an origin is left out rather than put into the CSP.
        origins = tuple(o for o in await list_origins(conn, merchant_id) if is_valid_origin(o))
        live = await merchant_is_live(conn, merchant_id)
    problem = state_error(intent)
    if problem is None and tokenizations >= MAX_TOKENIZATIONS:
        problem = ApiError("rate_limited", TOO_MANY_ATTEMPTS)
    if problem is not None:
        raise FrameUnavailable(problem.message, allowed_origins=origins, status_code=problem.status)
    return FrameContext(merchant_name=str(merchant["name"]) if merchant else "", amount=intent["amount"],
                        currency=intent["currency"], client_secret=client_secret, allowed_origins=origins,
                        description=intent["description"], test_mode=not live,
                        authorize_only=intent["capture_method"] == "manual")


async def frame(request: Request) -> Response:
    return await serve_frame(request, functools.partial(frame_context, request.state.gateway))


async def status_stream(request: Request) -> Response:
    """The intent's status for the checkout page: one SSE event per change, ending at a
    final status. Merchant pages on a registered origin may read it cross-origin."""
    rid = request_id_of(request.scope)
    gateway: Gateway = request.state.gateway
    try:
        intent, _ = await intent_of(gateway, request.query_params.get("clientSecret"))
        async with gateway.db.read() as conn:
            origins = await list_origins(conn, intent["merchant_id"])
    except ApiError as exc:
        return error_response(exc, rid)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Vary": "Origin",
               "Referrer-Policy": "no-referrer"}
    origin = request.headers.get("origin")
    if origin is not None and origin in origins:
        headers["Access-Control-Allow-Origin"] = origin
    return StreamingResponse(intent_status_events(gateway, request, intent["merchant_id"], intent["id"]),
                             media_type="text/event-stream", headers=headers)


routes = [
    *checkout_static_routes(),
    Route("/checkout/v1/keys", jwks, methods=["GET"]),
    Route("/checkout/v1/frame", frame, methods=["GET", "HEAD"]),
    Route("/checkout/v1/tokens", create_token, methods=["POST"]),
    Route("/checkout/v1/status/stream", status_stream, methods=["GET"]),
]
