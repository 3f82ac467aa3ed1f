"""``POST /checkout/v1/tokens``: an encrypted card in, a single-use token out (SPEC §5).

Authenticated by the clientSecret alone (the frame has no cookies and no API key). Order
of work, cheapest refusal first: body limit (413), JSON and the plaintext-card detector
over everything but a JWE in ``encryptedCard`` (400), the clientSecret (404), the intent's state
(409) and its limits (429), then the RSA-OAEP/AES-GCM decryption, then one unit of work
(one statement on PostgreSQL) that counts the tokenization — conditionally, so the 21st
is refused however many requests race — and stores the card in the vault, both or neither.

Messages here reach the customer (the frame shows them), so they are written for one.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from paygate_server.cards.pan import contains_card_number
from paygate_server.cards.resolved import resolve_encrypted_card
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.http.api import error_response, json_response, read_body
from paygate_server.http.middleware import request_id_of
from paygate_server.http.request_input import parse_json_object
from paygate_server.intents.service import checkout_intent
from paygate_server.processing.service import MAX_FAILED_ATTEMPTS
from paygate_server.storage import checkout as checkout_store
from paygate_server.storage.port import Row
from paygate_server.validation import reject_unknown, require

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["MAX_TOKENIZATIONS", "create_token", "intent_of", "state_error", "valid_client_secret"]

# Card-testing limit (SPEC §5): tokenizations per clientSecret, successful or not.
MAX_TOKENIZATIONS = 20
PAYABLE_STATUSES = ("created", "failed")
RETRY_AFTER_S = 3600
# Where a tokens body carries ciphertext: the plaintext-card detector skips a JWE there.
CIPHERTEXT_AT = (("encryptedCard",),)
_CLIENT_SECRET = re.compile(r"pi_[a-z0-9]{10,64}_secret_[a-z0-9]{10,128}")
_NO_STORE = {"Cache-Control": "no-store"}

UNREADABLE_CARD = "Your card details could not be read. Please try again."
TOO_MANY_ATTEMPTS = "Too many attempts to pay this order. Please contact the merchant."
UNKNOWN_CHECKOUT = "This checkout link is not valid."


def valid_client_secret(value: Any) -> bool:
    return isinstance(value, str) and _CLIENT_SECRET.fullmatch(value) is not None


def state_error(intent: Row) -> ApiError | None:
    """Why this intent cannot take a card now, or None."""
    status = intent["status"]
    if status == "succeeded":
        return ApiError("intent_state_conflict", "This order has already been paid.")
    if status == "canceled":
        return ApiError("intent_state_conflict", "This order has been canceled.")
    if status == "requires_capture":
        return ApiError("intent_state_conflict", "This order's card has been authorized already.")
    if status not in PAYABLE_STATUSES:
        return ApiError("intent_state_conflict", "A payment for this order is already being processed.")
    if intent["failed_attempts"] >= MAX_FAILED_ATTEMPTS:
        return _rate_limited()
    return None


async def intent_of(gateway: Gateway, client_secret: Any) -> tuple[Row, int]:
    """The intent a clientSecret names and its tokenizations so far (one statement);
    ``404 resource_missing`` if none."""
    if valid_client_secret(client_secret):
        found = await checkout_intent(gateway.payments, client_secret)
        if found is not None:
            return found
    raise ApiError("resource_missing", UNKNOWN_CHECKOUT, param="clientSecret")


def _rate_limited() -> ApiError:
    return ApiError("rate_limited", TOO_MANY_ATTEMPTS, headers={"Retry-After": str(RETRY_AFTER_S)})


def _parse(body: bytes) -> tuple[Any, Any]:
    value = parse_json_object(body)
    if contains_card_number(value, ciphertext_at=CIPHERTEXT_AT):
        raise ApiError("plaintext_card_data", "card details must be sent encrypted, only in encryptedCard")
    reject_unknown(value, ("clientSecret", "encryptedCard"))
    return require(value, "clientSecret"), require(value, "encryptedCard")


async def _tokenize(gateway: Gateway, body: bytes) -> dict[str, Any]:
    client_secret, jwe = _parse(body)
    db = gateway.db
    intent, tokenizations = await intent_of(gateway, client_secret)
    if (problem := state_error(intent)) is not None:
        raise problem
    intent_id, merchant_id = intent["id"], intent["merchant_id"]
    # A cheap early refusal, before the decryption; the upsert below is what enforces it.
    if tokenizations >= MAX_TOKENIZATIONS:
        raise _rate_limited()
    try:
        card = await resolve_encrypted_card(gateway, jwe)
    except ApiError:
        # A failed decryption counts too: probing with broken ciphertexts is card testing.
        async with db.write_one() as conn:
            counted = await checkout_store.count_tokenization(conn, intent_id, limit=MAX_TOKENIZATIONS,
                                                               now=now_us())
        if not counted:
            raise _rate_limited() from None
        raise ApiError("parameter_invalid", UNREADABLE_CARD, param="encryptedCard") from None
    stored = await gateway.vault.store_counted(card, merchant_id=merchant_id, intent_id=intent_id,
                                               limit=MAX_TOKENIZATIONS)
    if stored is None:
        raise _rate_limited()
    return {"token": stored.token, "card": stored.summary}


async def create_token(request: Request) -> Response:
    rid = request_id_of(request.scope)
    gateway: Gateway = request.state.gateway
    try:
        body = await read_body(request, gateway.settings.max_body_bytes)
        return json_response(200, await _tokenize(gateway, body), headers=dict(_NO_STORE))
    except ApiError as exc:
        response = error_response(exc, rid)
        response.headers.update(_NO_STORE)
        return response
