"""What Stripe's answers mean: the error classifier and the status tables of the Stripe
connector (:mod:`.stripe`), kept apart from the HTTP flows so that each rule can be read
and tested on its own.

The rule kept here is the one every connector keeps (SPEC §7): a known status is an
outcome; an error body that says nothing happened is DECLINED, FAILED or RETRY; anything
else — a 5xx, a timeout, a connection lost after sending, a non-JSON body, a status the
tables below do not know — is UNKNOWN, never FAILED.

Messages carry Stripe's short ``code``/``decline_code``/``message`` (at most 200
characters) and never a card number or a secret key: a Stripe message that contains
either is left out, and an exception is named by its class only.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number

from ._transport import Answer, auth_code, transport_failure
from .base import ChargeOutcome, ChargeResult
from .minor_units import STRIPE, Unrepresentable

__all__ = ["Answer", "Step", "capture_answer", "charge_answer", "classify_error", "decline_code",
           "error_body", "refund_answer", "refusal_by_payment_intent", "stated_money", "stripe_result",
           "void_answer", "with_stated_money"]

O = ChargeOutcome  # noqa: E741 - a short alias keeps the tables readable
_MAX_MESSAGE = 200
# An API key in any form Stripe knows (secret, restricted, publishable; live or test).
_KEY_LIKE = re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_\w+")


class Step(str, enum.Enum):
    """One kind of request to Stripe: the classifier's rules depend on it."""

    PAYMENT_METHOD = "payment_method"  # POST /v1/payment_methods (the card; moves no money)
    CREATE = "create"  # POST /v1/payment_intents (no card data; moves no money)
    TAG = "tag"  # POST /v1/payment_intents/{id} (metadata only; moves no money)
    CONFIRM = "confirm"  # POST /v1/payment_intents/{id}/confirm (charges or authorizes)
    CAPTURE = "capture"  # POST /v1/payment_intents/{id}/capture
    VOID = "void"  # POST /v1/payment_intents/{id}/cancel
    REFUND = "refund"  # POST /v1/refunds
    RETRIEVE = "retrieve"  # GET /v1/payment_intents/{id} (look-ups)
    LIST_REFUNDS = "list_refunds"  # GET /v1/refunds?payment_intent=… (look-ups)


_LOOKUPS = frozenset({Step.RETRIEVE, Step.LIST_REFUNDS})


def _text(value: Any) -> str | None:
    """A short text of Stripe's, or None when it is not one or could carry a secret."""
    if not isinstance(value, str) or not value:
        return None
    if contains_card_number(value) or _KEY_LIKE.search(value):
        return None
    return value[:_MAX_MESSAGE]


# Stripe's decline codes (``decline_code``, else the error's ``code``) → the gateway's
# (processing/service.py's messages know the first five). A Stripe code not listed is a
# ``generic_decline``; its own code stays in the message.
_DECLINE_CODES = {
    "generic_decline": "generic_decline",
    "card_declined": "generic_decline",
    "do_not_honor": "generic_decline",
    "insufficient_funds": "insufficient_funds",
    "expired_card": "expired_card",
    "incorrect_cvc": "incorrect_cvc",
    "invalid_cvc": "incorrect_cvc",
    "incorrect_number": "invalid_number",
    "invalid_number": "invalid_number",
    "authentication_required": "authentication_required",
    "payment_intent_authentication_failure": "authentication_required",
}


def decline_code(error: Any) -> str:
    """The gateway's decline code for a Stripe error object (``last_payment_error`` or an
    API error): its ``decline_code`` first (the issuer's reason), else its ``code``."""
    if not isinstance(error, dict):
        return "generic_decline"
    for key in ("decline_code", "code"):
        code = error.get(key)
        if isinstance(code, str) and code in _DECLINE_CODES:
            return _DECLINE_CODES[code]
    return "generic_decline"


def _detail(error: dict[str, Any]) -> str | None:
    code = _text(error.get("decline_code")) or _text(error.get("code"))
    message = _text(error.get("message"))
    detail = f"{code}: {message}" if code and message else (code or message)
    return detail[:_MAX_MESSAGE] if detail else None


def error_body(body: bytes | None) -> dict[str, Any] | None:
    """Stripe's ``{"error": {...}}`` object, or None when the body is not one."""
    try:
        data = jsoncodec.loads(body or b"")
    except jsoncodec.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def classify_error(step: Step, status_code: int | None, body: bytes | None,
                   error: BaseException | None = None) -> Answer:
    """What an exchange that brought no 2xx answer means (``error``: the exception raised
    instead of an answer). The cases, in order:

    - no connection (``ConnectFailed``): nothing sent — FAILED for an operation, UNKNOWN for
      a look-up (a look-up that did not happen says nothing);
    - a timeout, a lost connection, any other transport error: UNKNOWN;
    - a body that is not Stripe's error object: UNKNOWN;
    - ``idempotency_error`` (the key was used with other parameters, or is in use): UNKNOWN;
    - a look-up: UNKNOWN, 404 included — every look-up names a payment intent by the id
      Stripe gave when it created it, so Stripe had it: "no such payment intent" now (a key
      of another account, test data deleted) says nothing of whether it was confirmed, and
      NOT_FOUND would fail a charge, or send a capture or refund again, on a guess;
    - 402 (a card error: the request was valid but the payment failed): DECLINED — whatever
      ``type`` says (localstripe labels its 402s ``invalid_request_error``);
    - 400 and 404 (Stripe refused the request before doing anything): a refund is DECLINED
      (refused), any other operation FAILED;
    - 401, 403 (the key is wrong or may not do this): FAILED;
    - 429 (``rate_limit``, ``lock_timeout``: nothing done): RETRY with the same key;
    - 409, 5xx, anything else: UNKNOWN.
    """
    unknown = O.UNKNOWN
    failed = transport_failure(error, status_code, lookup=step in _LOOKUPS)
    if failed is not None:
        return failed
    body_error = error_body(body)
    if body_error is None:
        return Answer(unknown, message=f"unreadable answer (HTTP {status_code}): outcome unknown")
    detail = _detail(body_error)
    if body_error.get("type") == "idempotency_error":
        return Answer(unknown, message=f"idempotency error (HTTP {status_code}): outcome unknown")
    if step in _LOOKUPS:
        if status_code == 404:
            return Answer(unknown, message="Stripe no longer knows the payment intent it created (HTTP 404: "
                                           "another account's key, or deleted test data?): outcome unknown")
        return Answer(unknown, message=f"look-up failed (HTTP {status_code}): outcome unknown")
    if status_code == 402:
        return Answer(O.DECLINED, decline_code=decline_code(body_error), message=detail)
    if status_code in (400, 404):
        return Answer(O.DECLINED if step is Step.REFUND else O.FAILED, message=detail)
    if status_code in (401, 403):
        return Answer(O.FAILED, message=f"not authorized (HTTP {status_code}): nothing done")
    if status_code == 429:
        return Answer(O.RETRY, message=detail or "rate limited: nothing done")
    return Answer(unknown, message=f"unclassified answer (HTTP {status_code}): outcome unknown")


# -- status tables ------------------------------------------------------------------------------
# A payment intent's ``status`` → what it says about the operation. Statuses that need a
# closer look (a payment error, a capture method, why it was canceled) name a rule; any
# status not in a table is UNKNOWN.

_CHARGE_STATUSES: dict[str, str] = {
    "succeeded": "approved",
    "requires_capture": "authorized",  # APPROVED for an authorization (capture_method=manual)
    "requires_payment_method": "payment_error",  # DECLINED if it carries a payment error
    "requires_confirmation": "not_confirmed",
    "requires_action": "authentication",  # 3-D Secure: not supported yet
    "processing": "unknown",
    "canceled": "canceled",
}
_CAPTURE_STATUSES: dict[str, str] = {
    "succeeded": "approved",
    "requires_capture": "not_captured",
    "canceled": "hold_gone",
    "processing": "unknown",
}
_VOID_STATUSES: dict[str, str] = {
    "canceled": "voided",
    "succeeded": "already_captured",
    "requires_capture": "not_voided",
    "processing": "unknown",
}
_REFUND_STATUSES: dict[str, ChargeOutcome] = {
    "succeeded": O.APPROVED,
    "pending": O.UNKNOWN,  # asked about again later
    "requires_action": O.UNKNOWN,
    "failed": O.DECLINED,
    "canceled": O.DECLINED,
}


def _latest_charge_id(pi: dict[str, Any]) -> str | None:
    # An id, or the charge object itself when expanded (localstripe always expands it).
    charge = pi.get("latest_charge")
    if isinstance(charge, dict):
        charge = charge.get("id")
    return charge if isinstance(charge, str) and charge else None


def _hold_gone(pi: dict[str, Any]) -> Answer:
    # Stripe cancels an uncaptured payment intent by itself when the authorization expires
    # (cancellation_reason "automatic"); any other reason is a void.
    if pi.get("cancellation_reason") == "automatic":
        return Answer(O.DECLINED, decline_code="authorization_expired", message="the authorization expired")
    return Answer(O.DECLINED, decline_code="authorization_voided", message="the authorization was voided")


def charge_answer(pi: dict[str, Any], *, lookup: bool = False) -> Answer:
    """What a payment intent says about the charge (or authorization) it is: after the
    confirm, or when looked up. The charge id (``latest_charge``) stands in for the
    authorization code, which the payment intent does not carry."""
    rule = _CHARGE_STATUSES.get(str(pi.get("status")))
    manual = pi.get("capture_method") == "manual"
    charge_id = _latest_charge_id(pi)
    payment_error = pi.get("last_payment_error")
    if rule == "approved" or (rule == "authorized" and manual):
        if charge_id is None:
            return Answer(O.UNKNOWN, message="approved without a charge id: outcome unknown")
        return Answer(O.APPROVED, auth_code=auth_code(charge_id))
    if rule in ("payment_error", "canceled") and isinstance(payment_error, dict):
        return Answer(O.DECLINED, decline_code=decline_code(payment_error), message=_detail(payment_error))
    if rule == "authentication":
        return Answer(O.DECLINED, decline_code="authentication_required",
                      message="the card requires authentication (3-D Secure), which is not supported yet")
    if rule == "canceled" and manual and charge_id is not None:
        return Answer(O.APPROVED, auth_code=auth_code(charge_id))  # authorized, voided since
    if lookup and rule in ("payment_error", "not_confirmed", "canceled"):
        # No payment error and no charge: the intent was never confirmed, nothing charged.
        return Answer(O.NOT_FOUND, message="never confirmed")
    return Answer(O.UNKNOWN, message=f"unexpected payment intent status {_status(pi)}: outcome unknown")


def capture_answer(pi: dict[str, Any], *, lookup: bool = False) -> Answer:
    """What a payment intent says about its capture (after the capture, or looked up)."""
    rule = _CAPTURE_STATUSES.get(str(pi.get("status")))
    if rule == "approved":
        return Answer(O.APPROVED)
    if rule == "hold_gone":
        return _hold_gone(pi)
    if rule == "not_captured" and lookup:
        return Answer(O.NOT_FOUND, message="not captured")
    return Answer(O.UNKNOWN, message=f"unexpected payment intent status {_status(pi)}: outcome unknown")


def void_answer(pi: dict[str, Any], *, lookup: bool = False) -> Answer:
    """What a payment intent says about its void (after the cancel, or looked up)."""
    rule = _VOID_STATUSES.get(str(pi.get("status")))
    if rule == "voided":
        # Canceled by Stripe itself: the authorization expired before any void.
        return _hold_gone(pi) if pi.get("cancellation_reason") == "automatic" else Answer(O.APPROVED)
    if rule == "already_captured":
        # Captured at Stripe, not by the gateway (its capture is tagged and settled before any
        # void can begin): the hold is gone, so "refused, hold kept" would invite another void,
        # and the gateway has no capture of its own to record the money against (refunds and
        # settlement reports are matched to one). Unknown: for the operator (docs/processors.md).
        return Answer(O.UNKNOWN, message=f"the authorization was captured at Stripe outside the gateway"
                                         f"{_received(pi)}: not voided, for the operator")
    if rule == "not_voided" and lookup:
        return Answer(O.NOT_FOUND, message="not voided")
    return Answer(O.UNKNOWN, message=f"unexpected payment intent status {_status(pi)}: outcome unknown")


def _received(pi: dict[str, Any]) -> str:
    """`` (amount_received 5000 eur)`` as the intent says it, or nothing."""
    value, currency = pi.get("amount_received"), pi.get("currency")
    if type(value) is not int or not isinstance(currency, str):
        return ""
    return f" (amount_received {value} {_text(currency[:3])})"


def refusal_by_payment_intent(step: Step, refused: Answer, pi: dict[str, Any] | None) -> Answer:
    """A confirm, capture or void that Stripe refused (400: nothing done), read with the
    payment intent as it is (embedded in Stripe's error, or retrieved): the refusal may
    say the operation is already done (a replay) or why it cannot be (the hold is gone,
    the authorization captured). Otherwise the refusal stands."""
    if pi is None:
        return refused
    status = pi.get("status")
    if step is Step.CONFIRM and status in ("succeeded", "requires_capture", "requires_action", "processing"):
        return charge_answer(pi)
    if step is Step.CAPTURE:
        if status == "canceled":
            return _hold_gone(pi)
        if status == "succeeded":
            # Captured already, by no capture of this reference (a replay answers 200): at
            # Stripe, outside the gateway. "Refused, hold kept" would put the intent back to
            # requires_capture with no hold left; unknown instead, and the reconciler's
            # look-up (capture_answer) settles the capture by what Stripe received.
            return Answer(O.UNKNOWN, message=f"the authorization was captured at Stripe already"
                                             f"{_received(pi)}: settled by a look-up")
    if step is Step.VOID:
        if status in ("canceled", "succeeded"):
            return void_answer(pi)
    return refused


def refund_answer(refund: dict[str, Any]) -> Answer:
    outcome = _REFUND_STATUSES.get(str(refund.get("status")), O.UNKNOWN)
    if outcome is O.UNKNOWN:
        return Answer(O.UNKNOWN, message=f"refund status {_status(refund)}: outcome unknown")
    reason = _text(refund.get("failure_reason"))
    return Answer(outcome, message=reason if outcome is O.DECLINED else None)


def _status(obj: dict[str, Any]) -> str:
    status = obj.get("status")
    return repr(status[:40]) if isinstance(status, str) else type(status).__name__


# -- the money an answer says moved ------------------------------------------------------------

def _stripe_int(obj: dict[str, Any], key: str) -> int | None:
    """An amount field: None when absent; ValueError when it is there but no integer (an
    answer that says an amount moved in a form that cannot be read says nothing sure)."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise ValueError(f"{key} is not an integer")
    return value


def stated_money(obj: dict[str, Any], kind: str) -> tuple[int | None, str | None]:
    """The amount (in Stripe's minor units) and the upper-case currency a payment intent or
    a refund says its operation moved; (None, …) where the object does not say.

    A charge: what was received (an automatic one that succeeded) or is held (an
    authorization: ``amount_capturable``, less than ``amount`` after a partial
    authorization), else the intent's ``amount``. A capture that succeeded:
    ``amount_received``, else its charge's ``amount_captured`` (localstripe's intents carry
    neither total). A refund: its
    ``amount``. ValueError: an amount field that is no integer."""
    currency = obj.get("currency")
    currency = currency.upper() if isinstance(currency, str) and currency else None
    if kind == "refund":
        return _stripe_int(obj, "amount"), currency
    status = obj.get("status")
    if kind == "capture":
        if status != "succeeded":
            # Not captured (the hold is gone, or not yet): amount_received (0) is no amount
            # the capture refused.
            return None, currency
        received = _stripe_int(obj, "amount_received")
        charge = obj.get("latest_charge")
        if received is None and isinstance(charge, dict):
            received = _stripe_int(charge, "amount_captured")
        return received, currency
    if status == "requires_capture" and _stripe_int(obj, "amount_capturable") is not None:
        return _stripe_int(obj, "amount_capturable"), currency
    if status == "succeeded" and obj.get("capture_method") != "manual" and _stripe_int(obj, "amount_received") is not None:
        return _stripe_int(obj, "amount_received"), currency
    return _stripe_int(obj, "amount"), currency


def stripe_result(reference: str, answer: Answer, processor_id: str | None = None, *,
                  money: tuple[dict[str, Any], str] | None = None) -> ChargeResult:
    """``answer`` as the outcome of ``reference``, whose payment intent ``processor_id`` is the
    processor's id (Stripe's answers carry no other). ``money``: the object and the kind of
    operation whose stated amount it carries (:func:`with_stated_money`)."""
    result = dataclasses.replace(answer.result(reference), processor_id=processor_id)
    return result if money is None else with_stated_money(result, *money)


def with_stated_money(result: ChargeResult, obj: dict[str, Any], kind: str) -> ChargeResult:
    """``result`` with the money ``obj`` (a payment intent) says its ``kind`` of operation
    moved, in the gateway's minor units; UNKNOWN when that is no amount the gateway could
    have sent (ISK 12345 from Stripe is no whole number of krónur)."""
    try:
        amount, currency = stated_money(obj, kind)
    except ValueError as problem:
        return dataclasses.replace(result, outcome=O.UNKNOWN, message=f"{problem}: outcome unknown")
    if amount is None or currency is None:
        return result if currency is None else dataclasses.replace(result, currency=currency)
    try:
        return dataclasses.replace(result, amount=STRIPE.from_processor(amount, currency), currency=currency)
    except Unrepresentable as problem:
        return dataclasses.replace(result, outcome=O.UNKNOWN, message=f"{problem}: outcome unknown")
