"""Stripe's webhooks for the Stripe connector: the ``Stripe-Signature`` check and what each
event says, as :class:`ProcessorEvent`\\ s.

The signature (https://docs.stripe.com/webhooks#verify-manually): the header is
``t=<unix time>,v1=<hex>[,v1=<hex>…][,v0=…]``; a ``v1`` is the HMAC-SHA256, under the
endpoint's signing secret, of ``"<t>." + body`` (the raw bytes). Several ``v1`` appear
while a secret is being rolled: any one matching is enough. Only ``v1`` is checked
(``v0`` is Stripe's test-mode legacy scheme). A ``t`` more than the tolerance (300 s, the
official libraries' default) away from now is refused, in either direction: an old one
may be a replay, and a clock that far ahead is no better. Nothing of the secret or the
body is in a rejection's text.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

from paygate_server import jsoncodec

from .base import ChargeOutcome, ProcessorEvent, WebhookRejected, WebhookReply
from .stripe_rules import (
    Answer,
    charge_answer,
    decline_code,
    refund_answer,
    stripe_result,
    void_answer,
)

__all__ = ["TOLERANCE_S", "parse_webhook", "sign", "verify_signature"]

TOLERANCE_S = 300
_REPLY = WebhookReply((), 200, b'{"received":true}', "application/json")
_MAX_SIGNATURES = 16  # a header with more is no header Stripe sends
# Unix seconds have 10 digits for centuries yet; a longer "t" is far outside the tolerance
# (and read as a number would overflow the comparison with the clock's float).
_MAX_TIMESTAMP_DIGITS = 12


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` signature of ``body`` at ``timestamp``."""
    return hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str | None, body: bytes, *, now: float,
                     tolerance: int = TOLERANCE_S) -> None:
    """Raise :class:`WebhookRejected` unless ``header`` signs ``body`` under ``secret``."""
    if not header:
        raise WebhookRejected("no Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value) if len(value) <= _MAX_TIMESTAMP_DIGITS else 10**_MAX_TIMESTAMP_DIGITS
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise WebhookRejected("no timestamp in the Stripe-Signature header")
    if not signatures or len(signatures) > _MAX_SIGNATURES:
        raise WebhookRejected("no v1 signature in the Stripe-Signature header")
    if timestamp >= 10**_MAX_TIMESTAMP_DIGITS or abs(now - timestamp) > tolerance:
        raise WebhookRejected("signature timestamp outside the tolerance")
    expected = sign(secret, timestamp, body).encode()
    # Every candidate is compared (constant time each), so timing says nothing of which.
    matches = [hmac.compare_digest(expected, candidate.encode()) for candidate in signatures]
    if not any(matches):
        raise WebhookRejected("signature mismatch")


def _metadata(obj: dict[str, Any], key: str) -> str:
    metadata = obj.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _pi_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and value else None


def _events(kind: str, obj: dict[str, Any]) -> tuple[ProcessorEvent, ...]:
    """The outcomes one event states (only outcomes: a pending refund is no event)."""
    pi_id = _pi_id(obj)
    if kind == "payment_intent.succeeded":
        if obj.get("capture_method") == "manual":
            # A manual intent succeeds when it is captured: that capture's outcome. Its
            # reference is the one the connector tagged the intent with before capturing.
            return (ProcessorEvent("capture", stripe_result(_metadata(obj, "paygate_capture"),
                                                            Answer(ChargeOutcome.APPROVED), money=(obj, "capture")),
                                   pi_id),)
        answer = charge_answer(obj)
        if answer.outcome is not ChargeOutcome.APPROVED:
            return ()
        return (ProcessorEvent("charge", stripe_result(_metadata(obj, "paygate_reference"), answer, pi_id,
                                                        money=(obj, "charge")), pi_id),)
    if kind == "payment_intent.amount_capturable_updated":
        answer = charge_answer(obj)  # requires_capture on a manual intent: authorized
        if answer.outcome is not ChargeOutcome.APPROVED:
            return ()
        return (ProcessorEvent("charge", stripe_result(_metadata(obj, "paygate_reference"), answer, pi_id,
                                                        money=(obj, "charge")), pi_id),)
    if kind == "payment_intent.payment_failed":
        error = obj.get("last_payment_error")
        answer = Answer(ChargeOutcome.DECLINED, decline_code=decline_code(error))
        return (ProcessorEvent("charge", stripe_result(_metadata(obj, "paygate_reference"), answer, pi_id,
                                                        money=(obj, "charge")), pi_id),)
    if kind == "payment_intent.canceled":
        # Voided (APPROVED), or canceled by Stripe when the authorization expired (DECLINED
        # authorization_expired): the same reading as a void's look-up.
        return (ProcessorEvent("void", stripe_result(_metadata(obj, "paygate_void"), void_answer(obj)), pi_id),)
    if kind in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
        reference = _metadata(obj, "paygate_reference")
        answer = refund_answer(obj)
        if not reference or answer.outcome not in (ChargeOutcome.APPROVED, ChargeOutcome.DECLINED):
            return ()
        payment = obj.get("payment_intent")
        payment_id = payment if isinstance(payment, str) else None
        return (ProcessorEvent("refund", stripe_result(reference, answer, money=(obj, "refund")), payment_id),)
    return ()


def parse_webhook(secret: str, headers: Mapping[str, str], body: bytes, *,
                  clock: Callable[[], float] = time.time) -> WebhookReply:
    """Verify one of Stripe's event deliveries and say what it means; Stripe wants a 2xx."""
    verify_signature(secret, headers.get("stripe-signature"), body, now=clock())
    try:
        event = jsoncodec.loads(body)
    except jsoncodec.JSONDecodeError:
        raise WebhookRejected("the event is not JSON") from None
    data = event.get("data") if isinstance(event, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    kind = event.get("type") if isinstance(event, dict) else None
    if not isinstance(obj, dict) or not isinstance(kind, str):
        raise WebhookRejected("the event has no type or object")
    return WebhookReply(_events(kind, obj), _REPLY.status, _REPLY.body, _REPLY.content_type)
