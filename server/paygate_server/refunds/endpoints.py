"""``POST /api/v1/payment/refund`` and ``GET /api/v1/payment/refund/{refund_id}``.

The read is beyond SPEC §4's table (docs/api.md): a refund can answer ``pending`` or
``unknown`` and settle later, and ``refund.succeeded`` is the only webhook a refund has, so
a merchant holding one asks for it by id (as Stripe's ``GET /v1/refunds/:id``)."""
from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, api_endpoint, json_response
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


async def get_refund(ctx: ApiContext) -> Response:
    refund_id = require_id(ctx.request.path_params["refund_id"], "refundId", "re")
    row = await ctx.gateway.payments.get_refund(refund_id)
    if row is None or row["merchant_id"] != ctx.merchant_id:  # another merchant's is no one's
        raise ApiError("resource_missing", f"no such refund: {refund_id}", param="refundId")
    return json_response(200, render_refund(row))


routes = [Route("/api/v1/payment/refund", api_endpoint(create_refund), methods=["POST"]),
          Route("/api/v1/payment/refund/{refund_id}", api_endpoint(get_refund), methods=["GET"])]
