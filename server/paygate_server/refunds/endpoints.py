"""``POST /api/v1/payment/refund``."""
from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.http.api import ApiContext, api_endpoint
from paygate_server.intents.schemas import MAX_AMOUNT
from paygate_server.refunds.schemas import render_refund
from paygate_server.refunds.service import RefundPayment
from paygate_server.validation import optional_str, reject_unknown, require_id, require_int

__all__ = ["routes"]

REASON_MAX = 200


async def create_refund(ctx: ApiContext) -> Response:
    body = ctx.json_object()
    reject_unknown(body, ("paymentIntentId", "amount", "reason"))
    intent_id = require_id(body.get("paymentIntentId"), "paymentIntentId", "pi")
    amount = require_int(body, "amount", minimum=1, maximum=MAX_AMOUNT) if body.get("amount") is not None else None
    # SPEC §4: free text of at most 200 characters; the empty text is one (a form left blank).
    reason = optional_str(body, "reason", max_len=REASON_MAX, min_len=0)
    command = RefundPayment(ctx.merchant_id, intent_id, amount, reason)
    row = await ctx.idempotently(lambda claim: ctx.gateway.refunds.refund(command, claim))
    return await ctx.answer(200, jsoncodec.dumps(render_refund(row)), stored=True)


routes = [Route("/api/v1/payment/refund", api_endpoint(create_refund), methods=["POST"])]
