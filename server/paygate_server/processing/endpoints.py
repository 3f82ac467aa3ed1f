"""``POST /api/v1/payment/process``, ``…/capture`` and ``…/cancel`` (SPEC §4): validate, resolve the card, hand over."""
from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.cards.resolved import resolve_encrypted_card
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, api_endpoint
from paygate_server.intents.refusals import TOKEN_INVALID_MESSAGE, TOKEN_PARAM
from paygate_server.intents.schemas import MAX_AMOUNT, render_intent
from paygate_server.processing.service import CapturePayment, Processed, ProcessPayment
from paygate_server.storage.port import ExistingKey
from paygate_server.validation import reject_unknown, require, require_id, require_int

__all__ = ["answer_processed", "routes"]

# Where a process body carries ciphertext: the plaintext-card detector skips a JWE there.
CIPHERTEXT_AT = (("paymentDetails", "encryptedCard"),)


async def process_payment(ctx: ApiContext) -> Response:
    body = ctx.json_object(ciphertext_at=CIPHERTEXT_AT)
    reject_unknown(body, ("paymentIntentId", "paymentMethod", "paymentDetails"))
    intent_id = require_id(body.get("paymentIntentId"), "paymentIntentId", "pi")
    if require(body, "paymentMethod") != "card":
        raise ApiError("parameter_invalid", 'paymentMethod must be "card"', param="paymentMethod")
    details = require(body, "paymentDetails")
    if not isinstance(details, dict) or len(details) != 1 or not ({"token", "encryptedCard"} & details.keys()):
        raise ApiError("parameter_invalid",
                       'paymentDetails must be {"token": "tok_…"} or {"encryptedCard": "<JWE>"}',
                       param="paymentDetails")
    gateway = ctx.gateway
    if "encryptedCard" in details:
        card = await resolve_encrypted_card(gateway, details["encryptedCard"], param="paymentDetails.encryptedCard")
    else:
        token = details["token"]
        if not isinstance(token, str):  # a malformed request, not a token that cannot be used
            raise ApiError("parameter_invalid", 'paymentDetails.token must be a string ("tok_…")',
                           param=TOKEN_PARAM)
        if not gateway.has("vault"):
            raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param=TOKEN_PARAM)
        try:
            # Read, not consumed: the attempt consumes the token in its own transaction, after
            # the key was judged, so a refused request leaves the token redeemable.
            card = await gateway.vault.resolve_token(token, merchant_id=ctx.merchant_id, intent_id=intent_id)
        except ApiError:
            # A retry of a request that already consumed the token: its answer (or 409 while
            # it still runs, 422 for another request; abandoned, the intent as it is now)
            # instead of token_invalid. Judged without claiming the key, so a racing
            # original is never refused by this retry.
            if ctx.idempotency is not None and (found := await ctx.idempotency.peek(gateway.payments)) is not None:
                resumed = await gateway.processing.resumed(found, ctx.merchant_id, intent_id)
                if isinstance(resumed, ExistingKey):
                    return ctx.idempotency.judge(resumed)
                return await answer_processed(ctx, resumed)
            raise
    command = ProcessPayment(ctx.merchant_id, intent_id, card)
    return await answer_processed(ctx, await ctx.idempotently(lambda claim: gateway.processing.process(command, claim)))


async def answer_processed(ctx: ApiContext, done: Processed) -> Response:
    """The intent as the operation left it: the answer stored with the outcome is the response."""
    if done.answer is not None:  # stored with the outcome: the same bytes
        return await ctx.answer(200, done.answer, stored=True)
    return await ctx.answer(200, jsoncodec.dumps(render_intent(done.intent)), stored=False)


async def capture_payment(ctx: ApiContext) -> Response:
    body = ctx.json_object()
    reject_unknown(body, ("paymentIntentId", "amount"))
    intent_id = require_id(body.get("paymentIntentId"), "paymentIntentId", "pi")
    amount = None if body.get("amount") is None else require_int(body, "amount", minimum=1, maximum=MAX_AMOUNT)
    command = CapturePayment(ctx.merchant_id, intent_id, amount)
    return await answer_processed(ctx, await ctx.idempotently(lambda claim: ctx.gateway.processing.capture(command, claim)))


async def cancel_intent(ctx: ApiContext) -> Response:
    """``created``/``failed`` canceled at once; ``requires_capture`` voided first (a processing operation)."""
    body = ctx.json_object()
    reject_unknown(body, ("paymentIntentId",))
    intent_id = require_id(body.get("paymentIntentId"), "paymentIntentId", "pi")
    response = await answer_processed(ctx, await ctx.idempotently(
        lambda claim: ctx.gateway.processing.cancel(ctx.merchant_id, intent_id, claim)))
    ctx.gateway.notifier.publish(intent_id)
    return response


routes = [Route("/api/v1/payment/process", api_endpoint(process_payment), methods=["POST"]),
          Route("/api/v1/payment/capture", api_endpoint(capture_payment), methods=["POST"]),
          Route("/api/v1/payment/cancel", api_endpoint(cancel_intent), methods=["POST"])]
