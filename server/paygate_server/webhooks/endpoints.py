"""``/api/v1/webhooks``: a merchant's webhook endpoints (SPEC §4, §6)."""
from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from paygate_server import openapi
from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, api_endpoint, json_response
from paygate_server.storage import Transaction
from paygate_server.storage import webhook_endpoints as store
from paygate_server.validation import parse_int_param, reject_unknown, require_id, require_str
from paygate_server.webhooks import model
from paygate_server.webhooks.guard import (
    MAX_URL_LENGTH,
    AddressRefused,
    check_destination,
    default_port,
    parse_webhook_url,
    registration_lookups,
)

__all__ = ["routes", "parse_events", "validate_url", "REGISTRATION_LOOKUP_S"]

# How long a registration waits for its URL's host to resolve.
REGISTRATION_LOOKUP_S = 5.0
MAX_LIST_LIMIT = 100  # a list's page, as the intents' (its default here: every endpoint)


def parse_events(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ApiError("parameter_invalid", "events must be a non-empty list of event types", param="events")
    unknown = [v for v in value if v not in model.EVENT_TYPES]
    if unknown:
        raise ApiError("parameter_invalid", f"unknown event type {unknown[0][:60]!r}; known: "
                       f"{', '.join(model.EVENT_TYPES)}", param="events")
    return sorted(set(value), key=model.EVENT_TYPES.index)


async def validate_url(url: str, *, allow_private: bool) -> None:
    """Syntax, then the private-address guard (the delivery checks again, every time).
    Never a card number (the URL is shown on the console's pages and in the CLI's answers:
    the API's body check refused one, the command line did not)."""
    if contains_card_number(url):
        raise ApiError("parameter_invalid", "a webhook URL must not hold a card number", param="url")
    try:
        parts = parse_webhook_url(url)
    except ValueError as exc:
        raise ApiError("parameter_invalid", str(exc), param="url") from None
    try:
        # Bounded: a name whose nameservers never answer held the request until the system
        # resolver gave up (tens of seconds); the look-up's thread finishes on its own.
        async with asyncio.timeout(REGISTRATION_LOOKUP_S):
            with registration_lookups():
                await check_destination(parts.hostname or "", default_port(parts), allow_private=allow_private)
    except AddressRefused as exc:  # (its message never names an address)
        raise ApiError("parameter_invalid", str(exc), param="url") from None
    except TimeoutError:
        raise ApiError("parameter_invalid", f"the URL's host did not resolve within {REGISTRATION_LOOKUP_S:g} s",
                       param="url") from None


async def create_webhook_endpoint(ctx: ApiContext) -> Response:
    body = ctx.json_object()
    reject_unknown(body, ("url", "events"))
    url = require_str(body, "url", max_len=MAX_URL_LENGTH)
    events = parse_events(body.get("events"))
    await validate_url(url, allow_private=ctx.gateway.settings.webhook_allow_private)

    async def op(conn: Transaction) -> tuple[int, Any]:
        endpoint, secret = await model.create_endpoint(conn, ctx.gateway.master_key, ctx.merchant_id, url, events)
        return 201, model.render_endpoint(endpoint, secret)

    return await ctx.execute(op)


async def list_webhook_endpoints(ctx: ApiContext) -> Response:
    """Paged as ``GET /api/v1/payment/intents`` is (``limit``, ``startingAfter``; other query
    parameters ignored, as there), but ``limit`` defaults to its maximum: a merchant has at
    most :data:`model.MAX_ENDPOINTS` endpoints, so a plain GET still answers all of them."""
    limit = parse_int_param(ctx.query("limit"), "limit", default=MAX_LIST_LIMIT, minimum=1, maximum=MAX_LIST_LIMIT)
    starting_after = ctx.query("startingAfter")
    if starting_after is not None:
        starting_after = require_id(starting_after, "startingAfter", "we")
    async with ctx.gateway.db.read() as conn:
        endpoints, has_more = await store.page_endpoints(conn, ctx.merchant_id, limit=limit,
                                                         starting_after=starting_after)
    return json_response(200, {"data": [model.render_endpoint(e) for e in endpoints], "hasMore": has_more})


async def delete_webhook_endpoint(ctx: ApiContext) -> Response:
    endpoint_id = require_id(ctx.request.path_params["endpoint_id"], "webhookEndpointId", "we")
    async with ctx.gateway.db.write() as conn:
        deleted = await store.delete_endpoint(conn, ctx.merchant_id, endpoint_id, now_us())
    if not deleted:
        raise ApiError("resource_missing", f"no such webhook endpoint: {endpoint_id}", param="webhookEndpointId")
    return Response(status_code=204)


routes = [
    Route("/api/v1/webhooks", api_endpoint(create_webhook_endpoint), methods=["POST"]),
    Route("/api/v1/webhooks", api_endpoint(list_webhook_endpoints), methods=["GET"]),
    Route("/api/v1/webhooks/{endpoint_id}", api_endpoint(delete_webhook_endpoint), methods=["DELETE"]),
]

_EVENT_TYPE = {"type": "string", "enum": list(model.EVENT_TYPES)}
_SCHEMAS = {
    "CreateWebhookEndpoint": {
        "type": "object", "additionalProperties": False, "required": ["url"],
        "properties": {
            "url": {"type": "string", "maxLength": MAX_URL_LENGTH, "description":
                    "http(s) URL; must resolve to public addresses unless PAYGATE_WEBHOOK_ALLOW_PRIVATE=1"},
            "events": {"type": "array", "minItems": 1, "items": _EVENT_TYPE,
                       "description": "Default: every event type."},
        },
    },
    "WebhookEndpoint": {
        "type": "object", "required": ["webhookEndpointId", "url", "events", "status", "createdAt"],
        "properties": {
            "webhookEndpointId": {"type": "string", "pattern": "^we_"}, "url": {"type": "string"},
            "events": {"type": "array", "items": _EVENT_TYPE},
            "status": {"type": "string", "enum": ["enabled", "disabled"]},
            "disabledReason": {"type": ["string", "null"]},
            "secret": {"type": "string", "pattern": "^whsec_",
                       "description": "Only in the answer to create: store it to verify deliveries."},
            "createdAt": {"type": "string", "format": "date-time"},
        },
    },
    "WebhookEndpointList": {
        "type": "object", "required": ["data", "hasMore"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEndpoint"}},
                       "hasMore": {"type": "boolean"}},
    },
}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "Error", **_json("Error")} for s in (*openapi.COMMON_ERROR_STATUSES, *statuses)}


openapi.register({
    "/api/v1/webhooks": {
        "post": {
            "operationId": "createWebhookEndpoint", "summary": "Add a webhook endpoint (its secret is shown once)",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
            "requestBody": {"required": True, **_json("CreateWebhookEndpoint")},
            "responses": {"201": {"description": "Created", **_json("WebhookEndpoint")}, **_errors(409, 422)},
        },
        "get": {
            "operationId": "listWebhookEndpoints", "summary": "The merchant's webhook endpoints, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": MAX_LIST_LIMIT}},
                {"name": "startingAfter", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "The last webhookEndpointId of the previous page"},
            ],
            "responses": {"200": {"description": "Endpoints", **_json("WebhookEndpointList")}, **_errors(404)},
        },
    },
    "/api/v1/webhooks/{endpoint_id}": {
        "delete": {
            "operationId": "deleteWebhookEndpoint", "summary": "Delete a webhook endpoint (no more deliveries)",
            "parameters": [{"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "Deleted"}, **_errors(404)},
        },
    },
}, _SCHEMAS)
