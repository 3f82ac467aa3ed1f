"""Adyen's standard notifications for the Adyen connector, and what its answers and
notifications share: the refusal reasons, the texts kept from them, the money they state.

A notification is a batch of ``NotificationRequestItem``\\ s, each signed with HMAC-SHA256
under the webhook's key (docs.adyen.com/development-resources/webhooks/verify-hmac-signatures).
Every item of a batch must verify, else the whole batch is refused (``400``: nothing of it
applied). A company-level webhook carries the items of every merchant account of the
company under one key: a verified item for another merchant account than the connector's
is not read here but listed in :attr:`WebhookReply.other_accounts`, for the gateway to give
to its own account of that merchant account, if it has one that verifies it
(processors/notifications.py; docs/processors.md, "Processor notifications"). The batch is
acknowledged (``[accepted]``) either way: Adyen would otherwise send it again for ever.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, TypeVar

from paygate_server import jsoncodec

from ._transport import Answer, auth_code, processor_text
from .base import (
    ChargeOutcome,
    ChargeResult,
    OtherAccountItem,
    ProcessorEvent,
    SyncKind,
    WebhookRejected,
    WebhookReply,
)
from .minor_units import ADYEN, Unrepresentable

__all__ = ["decline_code_for", "nonempty", "parse_notification", "signing_string", "stated", "text"]

_Stating = TypeVar("_Stating", Answer, ChargeResult)  # what can state the money it moved

_MAX_MESSAGE = 200
# Belt and braces: a run of 12+ digits in any text taken from Adyen is cut out of the
# messages this module makes, so a card number echoed back can never reach a log.
_LONG_DIGITS = re.compile(r"\d{12,}")

# Adyen's refusal reasons (docs.adyen.com/development-resources/refusal-reasons), by
# refusalReasonCode and by refusalReason text (a notification carries only the text),
# → the gateway's decline codes. Every other reason is a generic decline.
_REFUSAL_CODES = {
    "6": "expired_card",
    "8": "invalid_number",
    "11": "authentication_required",  # 3D Not Authenticated
    "12": "insufficient_funds",  # Not enough balance
    "24": "incorrect_cvc",  # CVC Declined
    "38": "authentication_required",  # Authentication required
    "42": "authentication_required",  # 3DS Authentication Error
}
_REFUSAL_TEXTS = {
    "expired card": "expired_card",
    "invalid card number": "invalid_number",
    "3d not authenticated": "authentication_required",
    "not enough balance": "insufficient_funds",
    "cvc declined": "incorrect_cvc",
    "authentication required": "authentication_required",
    "3ds authentication error": "authentication_required",
}


def decline_code_for(reason_code: Any, reason: Any) -> str:
    """The gateway's decline code for an Adyen refusal (code first, then its text)."""
    if isinstance(reason_code, str | int) and str(reason_code) in _REFUSAL_CODES:
        return _REFUSAL_CODES[str(reason_code)]
    if isinstance(reason, str):
        return _REFUSAL_TEXTS.get(reason.strip().lower(), "generic_decline")
    return "generic_decline"


def text(value: Any) -> str | None:
    """A text of Adyen's as the gateway keeps it (processor_text), long digit runs cut out."""
    kept = processor_text(value, _MAX_MESSAGE)  # None if it quotes a card number, in any spacing
    return None if kept is None else _LONG_DIGITS.sub("[digits removed]", kept)


def nonempty(value: Any) -> str | None:
    """``value`` if it is a string with something in it, else None."""
    return value if isinstance(value, str) and value else None


# -- notifications ---------------------------------------------------------------------------

# The fields Adyen signs, in its documented order (docs.adyen.com/development-resources/
# webhooks/verify-hmac-signatures): amount.value and amount.currency are the 5th and 6th.
_SIGNED = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference",
           "value", "currency", "eventCode", "success")


def signing_string(item: Mapping[str, Any]) -> str:
    """The text Adyen signs for one NotificationRequestItem; ValueError if a signed field
    has a type Adyen never sends (it could not be the text Adyen signed)."""
    amount = item.get("amount")
    if not isinstance(amount, dict):
        raise ValueError("no amount")
    fields = {**item, "value": amount.get("value"), "currency": amount.get("currency")}
    parts = []
    for name in _SIGNED:
        value = fields.get(name)
        if value is None:
            parts.append("")
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            parts.append(str(value))
        else:
            raise ValueError(f"{name} is not a string")
    return ":".join(parts)


# eventCode → what it is about. CANCEL_OR_REFUND is decided per item (below).
_EVENT_KINDS: dict[str, SyncKind] = {
    "AUTHORISATION": "charge",
    "CAPTURE": "capture", "CAPTURE_FAILED": "capture",
    "CANCELLATION": "void", "TECHNICAL_CANCEL": "void",
    "REFUND": "refund", "REFUND_FAILED": "refund",
}
_ACTIONS: dict[str, SyncKind] = {"cancel": "void", "refund": "refund"}
# Events that report a failure whatever their "success" says: the scheme rejected a capture
# or a refund Adyen had accepted earlier.
_FAILURES = frozenset({"CAPTURE_FAILED", "REFUND_FAILED"})
_ACCEPTED = b"[accepted]"  # the answer Adyen expects, else it sends the batch again


def parse_notification(hmac_key: bytes, merchant_account: str, body: bytes) -> WebhookReply:
    """Verifies every item of a standard notification under ``hmac_key``, then reads those
    for ``merchant_account``; one item unverifiable or unreadable rejects the whole batch.
    Verified items for another merchant account are listed in ``other_accounts``."""
    try:
        data = jsoncodec.loads(body)
    except jsoncodec.JSONDecodeError:
        raise WebhookRejected("not JSON") from None
    items = data.get("notificationItems") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise WebhookRejected("no notificationItems")
    verified = []
    for wrapper in items:
        item = wrapper.get("NotificationRequestItem") if isinstance(wrapper, dict) else None
        if not isinstance(item, dict):
            raise WebhookRejected("an item is not a NotificationRequestItem")
        _verify(hmac_key, item)
        verified.append(item)
    events, others = [], []
    for index, item in enumerate(verified):
        # Read after the signature, so an unsigned item learns nothing of the account.
        code = item.get("merchantAccountCode")
        if code != merchant_account:
            others.append(OtherAccountItem(index, code if isinstance(code, str) else "",
                                           nonempty(item.get("pspReference")), nonempty(item.get("eventCode"))))
        elif (event := _event(item)) is not None:
            events.append(event)
    return WebhookReply(tuple(events), status=200, body=_ACCEPTED, content_type="text/plain",
                        other_accounts=tuple(others))


def _verify(hmac_key: bytes, item: dict[str, Any]) -> None:
    extra = item.get("additionalData")
    signature = extra.get("hmacSignature") if isinstance(extra, dict) else None
    if not isinstance(signature, str) or not signature:
        raise WebhookRejected("an item has no hmacSignature")
    try:
        signed = signing_string(item)
        given = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise WebhookRejected("an item cannot be read") from None
    expected = hmac.new(hmac_key, signed.encode("utf-8"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise WebhookRejected("an item's hmacSignature does not match")


def _event(item: dict[str, Any]) -> ProcessorEvent | None:
    """What one verified item states, or None when it states no outcome the gateway uses."""
    code = item.get("eventCode")
    extra = item.get("additionalData") or {}
    kind: SyncKind | None = _EVENT_KINDS.get(code) if isinstance(code, str) else None
    if code == "CANCEL_OR_REFUND":
        # Adyen says which it did in additionalData["modification.action"].
        # Not signed, and any JSON: only a string can name an action (a list is unhashable).
        action = extra.get("modification.action")
        kind = _ACTIONS.get(action) if isinstance(action, str) else None
    success = item.get("success")
    if kind is None or success not in ("true", "false"):
        return None
    psp_reference = nonempty(item.get("pspReference"))
    reference = nonempty(item.get("merchantReference")) or ""
    reason = text(item.get("reason"))
    if kind == "charge":
        if success == "true":
            # The code is in additionalData.authCode when enabled; else, for visa, mc and amex,
            # the reason reads "authCode:last4:expiry" (Webhooks API, AUTHORISATION's reason).
            code = auth_code(text(extra.get("authCode")))
            if code is None and reason and reason.count(":") == 2:
                code = auth_code(reason.split(":", 1)[0])
            result = ChargeResult(reference, ChargeOutcome.APPROVED, auth_code=code, processor_id=psp_reference)
        else:
            result = ChargeResult(reference, ChargeOutcome.DECLINED, decline_code=decline_code_for(None, reason),
                                  message=f"Refused: {reason}" if reason else "Refused", processor_id=psp_reference)
        return ProcessorEvent("charge", stated(result, item.get("amount")), payment_processor_id=psp_reference)
    payment = nonempty(item.get("originalReference"))
    if success == "true" and code not in _FAILURES:
        result = ChargeResult(reference, ChargeOutcome.APPROVED, processor_id=payment)
    else:
        detail = f": {reason}" if reason else ""
        result = ChargeResult(reference, ChargeOutcome.DECLINED, processor_id=payment,
                              message=f"Adyen {code}{detail}")
    if kind != "void":  # a cancellation's amount is the payment's: it moves nothing
        result = stated(result, item.get("amount"))
    return ProcessorEvent(kind, result, payment_processor_id=payment)


def stated(result: _Stating, amount: Any) -> _Stating:
    """``result`` with the money an answer's or notification's ``amount`` object states, in
    the gateway's minor units; UNKNOWN if it is unreadable or no amount the gateway sends."""
    if not isinstance(amount, dict):
        return result
    value, currency = amount.get("value"), amount.get("currency")
    if type(value) is not int or not isinstance(currency, str):
        return replace(result, outcome=ChargeOutcome.UNKNOWN, message="unreadable amount: outcome unknown")
    try:
        return replace(result, amount=ADYEN.from_processor(value, currency), currency=currency)
    except Unrepresentable as problem:
        return replace(result, outcome=ChargeOutcome.UNKNOWN, message=f"{text(str(problem))}: outcome unknown")
