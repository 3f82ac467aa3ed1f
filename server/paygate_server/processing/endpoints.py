"""``POST /api/v1/payment/process`` (SPEC §4): validate, resolve the card, hand over."""
from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from paygate_server import jsoncodec
from paygate_server.cards import InvalidCardData, decrypt_card_jwe, fingerprint
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, api_endpoint
from paygate_server.processing.connectors import CardDetails
from paygate_server.processing.service import ResolvedCard
from paygate_server.state import Gateway
from paygate_server.validation import reject_unknown, require, require_id

__all__ = ["routes", "resolve_encrypted_card", "FINGERPRINT_PURPOSE"]

MAX_JWE_LENGTH = 8 * 1024
# Where a process body carries ciphertext: the plaintext-card detector skips a JWE there.
CIPHERTEXT_AT = (("paymentDetails", "encryptedCard"),)
FINGERPRINT_PURPOSE = "card-fingerprint"  # the master-key derivation of gateway.fingerprint_key


def _kid_of(jwe: str) -> str | None:
    try:
        header = jsoncodec.loads(base64.urlsafe_b64decode(jwe.split(".", 1)[0] + "=="))
        kid = header.get("kid") if isinstance(header, dict) else None
        return kid if isinstance(kid, str) else None
    except Exception:
        return None  # the decryption below gives the one generic error


async def resolve_encrypted_card(gateway: Gateway, jwe: Any, *, param: str = "encryptedCard") -> ResolvedCard:
    """Decrypt an ``encryptedCard`` JWE; every bad one gets the same error (no oracle)."""
    if not isinstance(jwe, str) or not 0 < len(jwe) <= MAX_JWE_LENGTH:
        raise ApiError("parameter_invalid", "encryptedCard could not be decrypted", param=param)
    keys = await gateway.card_keys.private_keys_for(_kid_of(jwe))
    try:
        payload = decrypt_card_jwe(jwe, keys, now=datetime.now(UTC))
    except InvalidCardData:
        raise ApiError("parameter_invalid", "encryptedCard could not be decrypted", param=param) from None
    return ResolvedCard(
        details=CardDetails(payload.number, payload.exp_month, payload.exp_year, payload.cvc),
        summary=payload.summary(),
        fingerprint=fingerprint(payload.number, gateway.fingerprint_key),
    )


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
        card = await resolve_encrypted_card(gateway, details["encryptedCard"])
    else:
        token = details["token"]
        if not gateway.has("vault") or not isinstance(token, str):
            raise ApiError("token_invalid", "the token is not valid for this payment", param="token")
        try:
            # Read, not consumed: the attempt consumes the token in its own transaction, after
            # the key was judged, so a refused request leaves the token redeemable.
            card = await gateway.vault.resolve_token(token, merchant_id=ctx.merchant_id, intent_id=intent_id)
        except ApiError:
            # A retry of a request that already consumed the token: its answer (or 409 while
            # it still runs, 422 for another request) instead of token_invalid. Judged
            # without claiming the key, so a racing original is never refused by this retry.
            if ctx.idempotency is not None and (replay := await ctx.idempotency.peek(gateway.db)) is not None:
                return replay
            raise
    return await gateway.processing.process(ctx, intent_id, card)


routes = [Route("/api/v1/payment/process", api_endpoint(process_payment), methods=["POST"])]
