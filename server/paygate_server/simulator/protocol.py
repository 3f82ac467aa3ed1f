"""Wire format of the processor simulator: request validation and response bodies.

Errors use the simulator's own shape (the processor is not the gateway):
``{"status": "error", "code": ..., "retryable": bool, "message": ..., "param": ...}``.
``retryable`` tells a client whether the same request may be sent again with the same
reference; it is present only where the simulator knows that nothing was charged.
Messages never echo a card value.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any

from paygate_server import jsoncodec

from .records import (
    CaptureRecord,
    ChargeRecord,
    OperationReferences,
    RefundRecord,
    Settlement,
    VoidRecord,
)

__all__ = [
    "DECLINE_MESSAGES",
    "MAX_BODY_BYTES",
    "AmountInput",
    "ChargeInput",
    "ProtocolError",
    "VoidInput",
    "capture_body",
    "charge_body",
    "charge_state",
    "charge_summary",
    "error_body",
    "parse_amount_input",
    "parse_charge",
    "parse_date",
    "parse_json",
    "parse_void",
    "refund_body",
    "rfc3339",
    "settlement_body",
    "void_body",
]

MAX_BODY_BYTES = 64 * 1024
MAX_AMOUNT = 99_999_999
_REFERENCE_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,255}")
_CURRENCY_RE = re.compile(r"[A-Z]{3}")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CARD_SEPARATORS = str.maketrans("", "", " -")
# A settlement's totals per currency, in the order they are shown.
_TOTALS = (
    "chargeCount",
    "chargedAmount",
    "captureCount",
    "capturedAmount",
    "refundCount",
    "refundedAmount",
    "netAmount",
)

DECLINE_MESSAGES: dict[str, str] = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "invalid_number": "The card number is invalid.",
    "already_captured": "The charge was already captured.",
    "authorization_expired": "The authorization expired; nothing is held any more.",
    "authorization_voided": "The authorization was voided; nothing is held any more.",
}


class ProtocolError(Exception):
    """A request the simulator refuses; rendered by the app as a JSON error."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        retryable: bool | None = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.retryable = retryable


def error_body(
    code: str, message: str, *, param: str | None = None, retryable: bool | None = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "code": code, "message": message}
    if retryable is not None:
        body["retryable"] = retryable
    if param is not None:
        body["param"] = param
    return body


def rfc3339(moment: _dt.datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix; sorts lexicographically by time."""
    moment = moment.astimezone(_dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise ProtocolError(400, "invalid_json", "request body must be a JSON object")
    try:
        data = jsoncodec.loads(body)
    except jsoncodec.JSONDecodeError:
        raise ProtocolError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(400, "invalid_json", "request body must be a JSON object")
    return data


def _missing(param: str) -> ProtocolError:
    return ProtocolError(400, "parameter_missing", f"{param} is required", param=param)


def _invalid(param: str, message: str) -> ProtocolError:
    return ProtocolError(400, "parameter_invalid", message, param=param)


def _required(data: dict[str, Any], name: str, param: str | None = None) -> Any:
    value = data.get(name)
    if value is None:
        raise _missing(param or name)
    return value


def _reference(data: dict[str, Any], name: str) -> str:
    value = _required(data, name)
    if not isinstance(value, str) or not _REFERENCE_RE.fullmatch(value):
        raise _invalid(name, f"{name} must be 1-255 characters of [A-Za-z0-9_.:-]")
    return value


def _identifier(data: dict[str, Any], name: str) -> str:
    value = _required(data, name)
    if not isinstance(value, str) or not 1 <= len(value) <= 255 or not value.isprintable():
        raise _invalid(name, f"{name} must be a string of 1-255 printable characters")
    return value


def _int(data: dict[str, Any], name: str, low: int, high: int, param: str | None = None) -> int:
    param = param or name
    value = _required(data, name, param)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(param, f"{param} must be an integer between {low} and {high}")
    return value


def _amount(data: dict[str, Any]) -> int:
    return _int(data, "amount", 1, MAX_AMOUNT)


@dataclass(frozen=True, slots=True)
class ChargeInput:
    reference: str
    payment_intent_id: str
    merchant_id: str
    amount: int
    currency: str
    # The card number: kept out of repr so that no traceback or log line shows it.
    digits: str = field(repr=False)
    exp_month: int
    exp_year: int
    # False: an authorization (the amount is held until captured, voided or expired).
    capture: bool = True


def parse_charge(data: dict[str, Any]) -> ChargeInput:
    reference = _reference(data, "reference")
    payment_intent_id = _identifier(data, "paymentIntentId")
    merchant_id = _identifier(data, "merchantId")
    amount = _amount(data)
    currency = _required(data, "currency")
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise _invalid("currency", "currency must be an upper-case ISO 4217 code")
    card = _required(data, "card")
    if not isinstance(card, dict):
        raise _invalid("card", "card must be an object")
    number = _required(card, "number", "card.number")
    if not isinstance(number, str):
        raise _invalid("card.number", "card.number must be a string")
    digits = number.translate(_CARD_SEPARATORS)
    if not (12 <= len(digits) <= 19 and digits.isascii() and digits.isdigit()):
        raise _invalid("card.number", "card.number must be 12-19 digits")
    exp_month = _int(card, "expMonth", 1, 12, "card.expMonth")
    exp_year = _int(card, "expYear", 0, 2199, "card.expYear")
    if exp_year < 100:
        exp_year += 2000  # two-digit years, as printed on the card
    elif exp_year < 2000:
        raise _invalid("card.expYear", "card.expYear must be a 2- or 4-digit year")
    cvc = card.get("cvc")
    if cvc is not None and not (
        isinstance(cvc, str) and 3 <= len(cvc) <= 4 and cvc.isascii() and cvc.isdigit()
    ):
        raise _invalid("card.cvc", "card.cvc must be 3 or 4 digits")
    capture = data.get("capture")
    if capture is None:  # left out (or null, as for every optional field): a charge
        capture = True
    elif not isinstance(capture, bool):
        raise _invalid("capture", "capture must be true or false")
    return ChargeInput(
        reference,
        payment_intent_id,
        merchant_id,
        amount,
        currency,
        digits,
        exp_month,
        exp_year,
        capture,
    )


@dataclass(frozen=True, slots=True)
class AmountInput:
    """A capture's or a refund's request: both name a charge and an amount of it."""

    reference: str
    charge_reference: str
    amount: int


def parse_amount_input(data: dict[str, Any]) -> AmountInput:
    return AmountInput(
        reference=_reference(data, "reference"),
        charge_reference=_reference(data, "chargeReference"),
        amount=_amount(data),
    )


@dataclass(frozen=True, slots=True)
class VoidInput:
    reference: str
    charge_reference: str


def parse_void(data: dict[str, Any]) -> VoidInput:
    return VoidInput(
        reference=_reference(data, "reference"),
        charge_reference=_reference(data, "chargeReference"),
    )


def parse_date(value: str | None) -> _dt.date:
    if value is None:
        raise _missing("date")
    if not _DATE_RE.fullmatch(value):
        raise _invalid("date", "date must be YYYY-MM-DD")
    try:
        day = _dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid("date", "date must be a valid calendar day") from None
    if day == _dt.date.max:
        # A report spans the day up to the next one's start, which this one has not (once
        # an OverflowError, a 500).
        raise _invalid("date", "date must be before 9999-12-31")
    return day


# --- response bodies ----------------------------------------------------------------------


def charge_body(record: ChargeRecord) -> dict[str, Any]:
    """The answer to ``POST /v1/charges``; identical on every replay of the reference."""
    return {
        "reference": record.reference,
        "status": record.status,
        "authCode": record.auth_code,
        "declineCode": record.decline_code,
        "message": DECLINE_MESSAGES.get(record.decline_code or "") if record.decline_code else None,
        "paymentIntentId": record.payment_intent_id,
        "merchantId": record.merchant_id,
        "amount": record.amount,
        "currency": record.currency,
        "card": {"brand": record.card_brand, "last4": record.card_last4},
        "capture": record.capture,
        "expiresAt": record.expires_at,
        "createdAt": record.created_at,
    }


def charge_state(record: ChargeRecord, now: str) -> dict[str, Any]:
    """Where a charge stands now (changes after its answer, so never in a replay):
    ``captured``/``amountCaptured`` (an approved automatic charge is captured in full),
    ``voided``, ``expired`` (an authorization's hold ended on the simulator's clock
    ``now``, uncaptured)."""
    captured = record.captured_amount
    return {
        "captured": captured > 0,
        "amountCaptured": captured,
        "voided": record.voided,
        "expired": record.expired(now),
        "amountRefunded": record.amount_refunded,
    }


def charge_summary(
    record: ChargeRecord, operations: OperationReferences, now: str
) -> dict[str, Any]:
    """One row of ``GET /v1/charges?paymentIntentId=``: the charge, where it stands, and
    the references of the captures, voids and refunds recorded against it (beyond SPEC
    §7's row: how many of each reached it, which its amounts cannot always show)."""
    return {
        "reference": record.reference,
        "paymentIntentId": record.payment_intent_id,
        "merchantId": record.merchant_id,
        "amount": record.amount,
        "currency": record.currency,
        "status": record.status,
        "authCode": record.auth_code,
        "declineCode": record.decline_code,
        "capture": record.capture,
        "expiresAt": record.expires_at,
        **charge_state(record, now),
        "createdAt": record.created_at,
        "captures": list(operations.captures),
        "voids": list(operations.voids),
        "refunds": list(operations.refunds),
    }


def refund_body(record: RefundRecord) -> dict[str, Any]:
    return {
        "reference": record.reference,
        "chargeReference": record.charge_reference,
        "amount": record.amount,
        "currency": record.currency,
        "status": record.status,
        "createdAt": record.created_at,
    }


def capture_body(record: CaptureRecord) -> dict[str, Any]:
    """The answer to ``POST /v1/captures``, identical on every replay. ``amount`` is the
    capture's (as asked); on ``refused`` nothing was captured."""
    return {
        "reference": record.reference,
        "chargeReference": record.charge_reference,
        "status": record.status,
        "amount": record.amount,
        "currency": record.currency,
        "declineCode": record.decline_code,
        "message": DECLINE_MESSAGES.get(record.decline_code) if record.decline_code else None,
        "createdAt": record.created_at,
    }


def void_body(record: VoidRecord) -> dict[str, Any]:
    """The answer to ``POST /v1/voids``, identical on every replay."""
    return {
        "reference": record.reference,
        "chargeReference": record.charge_reference,
        "status": record.status,
        "declineCode": record.decline_code,
        "message": DECLINE_MESSAGES.get(record.decline_code) if record.decline_code else None,
        "createdAt": record.created_at,
    }


def settlement_body(day: _dt.date, settled: Settlement) -> dict[str, Any]:
    totals: dict[str, dict[str, int]] = {}

    def entry(currency: str) -> dict[str, int]:
        return totals.setdefault(currency, dict.fromkeys(_TOTALS, 0))

    for charge in settled.charges:
        bucket = entry(charge.currency)
        bucket["chargeCount"] += 1
        bucket["chargedAmount"] += charge.amount
        bucket["netAmount"] += charge.amount
    for capture, _charge in settled.captures:
        bucket = entry(capture.currency)
        bucket["captureCount"] += 1
        bucket["capturedAmount"] += capture.amount
        bucket["netAmount"] += capture.amount
    for refund, _charge in settled.refunds:
        bucket = entry(refund.currency)
        bucket["refundCount"] += 1
        bucket["refundedAmount"] += refund.amount
        bucket["netAmount"] -= refund.amount
    return {
        "date": day.isoformat(),
        "charges": [
            {
                "reference": c.reference,
                "paymentIntentId": c.payment_intent_id,
                "merchantId": c.merchant_id,
                "amount": c.amount,
                "currency": c.currency,
                "authCode": c.auth_code,
                "createdAt": c.created_at,
            }
            for c in settled.charges
        ],
        "captures": [
            {
                "reference": k.reference,
                "chargeReference": k.charge_reference,
                "paymentIntentId": c.payment_intent_id,
                "merchantId": c.merchant_id,
                "amount": k.amount,
                "currency": k.currency,
                "authCode": c.auth_code,
                "createdAt": k.created_at,
            }
            for k, c in settled.captures
        ],
        "refunds": [
            {
                "reference": r.reference,
                "chargeReference": r.charge_reference,
                "paymentIntentId": c.payment_intent_id,
                "merchantId": c.merchant_id,
                "amount": r.amount,
                "currency": r.currency,
                "createdAt": r.created_at,
            }
            for r, c in settled.refunds
        ],
        "totals": totals,
    }
