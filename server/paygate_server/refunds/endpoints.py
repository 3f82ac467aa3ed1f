"""``POST /api/v1/payment/refund``."""
from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from paygate_server.http.api import ApiContext, api_endpoint
from paygate_server.intents.schemas import MAX_AMOUNT
from paygate_server.validation import optional_str, reject_unknown, require_id, require_int

__all__ = ["routes"]


async def create_refund(ctx: ApiContext) -> Response:
    body = ctx.json_object()
    reject_unknown(body, ("paymentIntentId", "amount", "reason"))
    intent_id = require_id(body.get("paymentIntentId"), "paymentIntentId", "pi")
    amount = require_int(body, "amount", minimum=1, maximum=MAX_AMOUNT) if body.get("amount") is not None else None
    reason = optional_str(body, "reason", max_len=200)
    return await ctx.gateway.refunds.refund(ctx, intent_id, amount, reason)


routes = [Route("/api/v1/payment/refund", api_endpoint(create_refund), methods=["POST"])]
