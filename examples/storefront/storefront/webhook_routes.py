"""``POST /webhooks/paygate``: the gateway's deliveries (Standard Webhooks, SPEC §6).

1. Verify the signature over the raw body with ``paygate.webhooks.verify`` (which also
   refuses a timestamp more than 5 minutes off): anything else is answered 400 and ignored.
2. Record the ``webhook-id`` and apply the event in one database transaction: a
   redelivery (delivery is at least once) is acknowledged and changes nothing.
3. Answer 2xx quickly; the gateway retries anything else, with backoff, for days.
"""
from __future__ import annotations

import logging

import paygate
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storefront.web import read_body, run, shop_of

__all__ = ["CROSS_SITE_PATHS", "MAX_WEBHOOK_BYTES", "routes"]

log = logging.getLogger("storefront.webhooks")
MAX_WEBHOOK_BYTES = 256 * 1024


async def receive(request: Request) -> Response:
    shop = shop_of(request)
    secret = shop.config.webhook_secret
    if not secret:
        # Not configured yet: a 5xx makes the gateway keep the event and retry later.
        return JSONResponse({"error": "webhooks are not configured"}, status_code=503)
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    try:
        payload = paygate.webhooks.verify(body, request.headers, secret)
    except paygate.SignatureVerificationError as exc:
        log.warning("refused a webhook: %s", exc)
        return JSONResponse({"error": "invalid signature"}, status_code=400)
    webhook_id = request.headers["webhook-id"]
    receipt = await run(shop.store.receive_webhook, webhook_id, payload)
    log.info("webhook %s %s%s", webhook_id, payload.get("type"), " (duplicate)" if receipt.duplicate else "")
    return JSONResponse({"received": True, "duplicate": receipt.duplicate})


PATH = "/webhooks/paygate"
#: The gateway posts here server to server (no Origin); the signature is the proof instead.
CROSS_SITE_PATHS = frozenset({PATH})
routes = [Route(PATH, receive, methods=["POST"])]
