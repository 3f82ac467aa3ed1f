"""The API errors of the store's refusals (:class:`~paygate_server.storage.port.StoreRefusal`),
one wording per refusal for every operation on an intent (SPEC §4, §5)."""
from __future__ import annotations

from paygate_server.errors import ApiError
from paygate_server.storage.port import (
    AttemptInFlight,
    IntentMissing,
    IntentNotInStatus,
    OverCapture,
    OverRefund,
    StoreRefusal,
    TokenSpent,
    TooManyFailures,
)

__all__ = ["TOKEN_INVALID_MESSAGE", "TOKEN_PARAM", "no_such_intent", "refusal_error"]

# The message of ``token_invalid`` (SPEC §5), shared with the vault's own refusals.
TOKEN_INVALID_MESSAGE = ("the token is not valid for this payment (tokens are single-use, expire,"
                         " and belong to one payment intent)")
# Where ``process`` takes the token: a parameter is named by its path in the body (as Stripe's
# ``payment_method_data[card][number]``), so a client can point at the field.
TOKEN_PARAM = "paymentDetails.token"


def no_such_intent(intent_id: str) -> ApiError:
    return ApiError("resource_missing", f"no such payment intent: {intent_id}", param="paymentIntentId")


def refusal_error(refusal: StoreRefusal, intent_id: str, verb: str) -> ApiError:
    """``verb``: what was refused, as in "cannot be processed" (processed, canceled, refunded, captured)."""
    if isinstance(refusal, IntentMissing):
        return no_such_intent(intent_id)
    if isinstance(refusal, IntentNotInStatus):
        return ApiError("intent_state_conflict", f"a payment intent in status {refusal.status} cannot be {verb}")
    if isinstance(refusal, TooManyFailures):
        return ApiError("rate_limited", "too many failed payment attempts on this intent",
                        headers={"Retry-After": "3600"})
    if isinstance(refusal, AttemptInFlight):
        return ApiError("intent_state_conflict", "another payment attempt is in flight for this intent")
    if isinstance(refusal, TokenSpent):
        return ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param=TOKEN_PARAM)
    if isinstance(refusal, OverRefund):
        if refusal.remaining is None:
            return ApiError("parameter_invalid", "amount exceeds what remains refundable", param="amount")
        return ApiError("parameter_invalid",
                        f"amount must be at most what remains refundable ({refusal.remaining})", param="amount")
    if isinstance(refusal, OverCapture):
        return ApiError("parameter_invalid", f"amount must be at most what is capturable ({refusal.capturable})",
                        param="amount")
    raise TypeError(f"unhandled store refusal {refusal!r}")
