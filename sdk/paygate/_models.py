"""Typed, immutable results.

The wire is camelCase, Python is snake_case. Every model keeps the whole object it was
built from in ``raw`` (not shown in ``repr``), so a field the gateway adds later is
readable by old clients (``intent.raw["newField"]``) and never breaks parsing. Parsing is
lenient: a missing or mistyped optional field becomes ``None`` rather than an exception,
and an unknown status stays a plain string. Money is the exception: an amount that is
there but not a JSON integer (a float, a string, a boolean) is an ``APIError``, never a
silent ``None`` or ``0`` the merchant could act on.
Models holding mutable JSON (``metadata``, ``raw``...) are not hashable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from ._exceptions import APIError, CardError

__all__ = [
    "DEFAULT_WAIT_STATUSES",
    "FINAL_STATUSES",
    "STREAM_END_STATUSES",
    "Attempt",
    "Card",
    "Event",
    "HistoryEvent",
    "IntentStatus",
    "LastError",
    "Page",
    "PaymentIntent",
    "PaymentStatus",
    "Refund",
    "WebhookEndpoint",
]

JSONObject = dict[str, Any]
T = TypeVar("T")


class IntentStatus(StrEnum):
    """The intent statuses (SPEC §4). Members compare equal to their strings, and models
    keep ``status`` as a plain ``str`` so a status added later does not break parsing."""

    CREATED = "created"
    IN_PROGRESS = "in_progress"
    #: Only with ``capture_method="manual"``: the card is authorized and the funds held;
    #: ``capture()`` takes them, ``cancel()`` voids the hold.
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


#: Statuses an intent never leaves.
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "canceled"})
#: What ``wait_for_status()`` waits for by default: an outcome the merchant must act on.
#: ``failed`` is not final (the intent can be processed again with another card) but it
#: ends the attempt; ``requires_capture`` is not final either, but nothing happens to the
#: held funds until the merchant captures or cancels (or the hold expires, days later).
DEFAULT_WAIT_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "canceled", "failed", "requires_capture"}
)
#: Where ``stream_status()`` stops by default: where the gateway ends the status stream
#: (SPEC §4), a final status or ``requires_capture``. Not ``failed``: the shopper may try
#: another card on the same intent, and the stream stays open for it.
STREAM_END_STATUSES: frozenset[str] = FINAL_STATUSES | {"requires_capture"}


# -- lenient field readers ---------------------------------------------------------------


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _money(data: Mapping[str, Any], key: str) -> int | None:
    """An amount in minor units; ``None`` if absent or null. Anything else is not the
    contract's: reading ``"amountRefunded": "500"`` as 0, or ``19.99`` as nothing, would
    let a merchant refund or ship on a wrong number."""
    value = data.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise APIError(
        f"the gateway sent {key} as a JSON {type(value).__name__}, "
        "not an integer amount in minor units"
    )


def _obj(data: Mapping[str, Any], key: str) -> JSONObject | None:
    value = data.get(key)
    return dict(value) if isinstance(value, dict) else None


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _str_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = data.get(key)
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


# -- models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """The charged card: brand, last 4 digits and expiry only (never the number)."""

    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Card:
        return cls(
            brand=_str(data, "brand"),
            last4=_str(data, "last4"),
            exp_month=_int(data, "expMonth"),
            exp_year=_int(data, "expYear"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class LastError:
    """Why the last attempt failed: ``code`` (e.g. ``card_declined``), ``decline_code``
    (e.g. ``insufficient_funds``) and a human ``message``."""

    code: str | None
    decline_code: str | None
    message: str | None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LastError:
        return cls(
            code=_str(data, "code"),
            decline_code=_str(data, "declineCode"),
            message=_str(data, "message"),
            raw=dict(data),
        )


def _last_error(data: Mapping[str, Any]) -> LastError | None:
    value = data.get("lastError")
    return LastError.from_dict(value) if isinstance(value, dict) else None


def _raise_if_failed(
    payment: PaymentIntent | PaymentStatus, payment_intent_id: str, last_error: LastError | None
) -> None:
    if payment.status != IntentStatus.FAILED:
        return
    code = last_error.code if last_error else None
    decline_code = last_error.decline_code if last_error else None
    message = (last_error.message if last_error else None) or "the payment attempt failed"
    raise CardError(
        message,
        code=code,
        decline_code=decline_code,
        payment_intent_id=payment_intent_id,
        last_error=last_error,
        payment=payment,
    )


@dataclass(frozen=True)
class PaymentIntent:
    """A payment intent (SPEC §4). ``client_secret`` is only set by ``create`` and is
    hidden from ``repr``.

    Manual capture: ``capture_method`` (``"automatic"`` or ``"manual"``),
    ``amount_capturable`` (what is held and may still be captured: non-zero only in
    ``requires_capture``), ``amount_received`` (what was charged or captured) and
    ``cancellation_reason`` (``None``, ``"requested"`` or ``"expired"``). Each is ``None``
    when the gateway does not send it (one older than manual capture): the SDK does not
    guess, e.g. ``amount_received`` of an older gateway's ``succeeded`` intent.
    """

    payment_intent_id: str
    status: str
    amount: int | None
    currency: str | None
    amount_refunded: int
    merchant_id: str | None = None
    product_details: JSONObject | None = None
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    client_secret: str | None = field(default=None, repr=False)
    last_error: LastError | None = None
    card: Card | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Appended after the older fields so positional construction keeps its meaning.
    capture_method: str | None = None
    amount_capturable: int | None = None
    amount_received: int | None = None
    cancellation_reason: str | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.payment_intent_id

    @property
    def is_final(self) -> bool:
        """``succeeded`` or ``canceled``: the intent never changes status again."""
        return self.status in FINAL_STATUSES

    def raise_if_failed(self) -> PaymentIntent:
        """Raise ``CardError`` if the status is ``failed``; otherwise return ``self``."""
        _raise_if_failed(self, self.payment_intent_id, self.last_error)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentIntent:
        card = data.get("card")
        return cls(
            payment_intent_id=_str(data, "paymentIntentId") or _str(data, "id") or "",
            status=_str(data, "status") or "",
            amount=_money(data, "amount"),
            currency=_str(data, "currency"),
            amount_refunded=_money(data, "amountRefunded") or 0,
            merchant_id=_str(data, "merchantId"),
            product_details=_obj(data, "productDetails"),
            description=_str(data, "description"),
            metadata=_str_map(data, "metadata"),
            client_secret=_str(data, "clientSecret"),
            last_error=_last_error(data),
            card=Card.from_dict(card) if isinstance(card, dict) else None,
            created_at=_time(data, "createdAt"),
            updated_at=_time(data, "updatedAt"),
            capture_method=_str(data, "captureMethod"),
            amount_capturable=_money(data, "amountCapturable"),
            amount_received=_money(data, "amountReceived"),
            cancellation_reason=_str(data, "cancellationReason"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class PaymentStatus:
    """The answer of ``GET /api/v1/payment/status`` and of each status-stream event."""

    payment_intent_id: str
    status: str
    amount: int | None = None
    currency: str | None = None
    amount_refunded: int = 0
    last_error: LastError | None = None
    updated_at: datetime | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.payment_intent_id

    @property
    def is_final(self) -> bool:
        """``succeeded`` or ``canceled``: the intent never changes status again."""
        return self.status in FINAL_STATUSES

    def raise_if_failed(self) -> PaymentStatus:
        """Raise ``CardError`` if the status is ``failed``; otherwise return ``self``."""
        _raise_if_failed(self, self.payment_intent_id, self.last_error)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentStatus:
        return cls(
            payment_intent_id=_str(data, "paymentIntentId") or "",
            status=_str(data, "status") or "",
            amount=_money(data, "amount"),
            currency=_str(data, "currency"),
            amount_refunded=_money(data, "amountRefunded") or 0,
            last_error=_last_error(data),
            updated_at=_time(data, "updatedAt"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Refund:
    """A refund: ``POST /api/v1/payment/refund``'s answer, or a refund event's data."""

    refund_id: str
    payment_intent_id: str | None
    amount: int | None
    status: str | None
    reason: str | None = None  # the merchant's
    failure_reason: str | None = None  # a failed refund's: why, in the processor's words
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.refund_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refund:
        return cls(
            refund_id=_str(data, "refundId") or _str(data, "id") or "",
            payment_intent_id=_str(data, "paymentIntentId"),
            amount=_money(data, "amount"),
            status=_str(data, "status"),
            reason=_str(data, "reason"),
            failure_reason=_str(data, "failureReason"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Attempt:
    """One attempt at the processor, as an intent's history shows it: ``kind``
    (``charge``, ``authorization``, ``capture``, ``void``), ``status`` (``pending``,
    ``unknown``, ``succeeded``, ``failed``), the amount, the card (brand, last 4 and expiry
    only) and, for a decline, its ``decline_code``."""

    attempt_id: str
    payment_intent_id: str | None
    kind: str | None
    status: str | None
    amount: int | None
    currency: str | None
    card: Card | None = None
    decline_code: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.attempt_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        card = data.get("card")
        return cls(
            attempt_id=_str(data, "attemptId") or "",
            payment_intent_id=_str(data, "paymentIntentId"),
            kind=_str(data, "kind"),
            status=_str(data, "status"),
            amount=_money(data, "amount"),
            currency=_str(data, "currency"),
            card=Card.from_dict(card) if isinstance(card, dict) else None,
            decline_code=_str(data, "declineCode"),
            created_at=_time(data, "createdAt"),
            updated_at=_time(data, "updatedAt"),
            raw=dict(data),
        )


# The object each history event type carries, by the type's prefix.
_HISTORY_OBJECTS: dict[str, Callable[[Mapping[str, Any]], PaymentIntent | Attempt | Refund]] = {
    "payment_intent": PaymentIntent.from_dict,
    "attempt": Attempt.from_dict,
    "refund": Refund.from_dict,
}


@dataclass(frozen=True)
class HistoryEvent:
    """One change of a payment intent (``payment_intents.history()``, oldest first).

    ``sequence`` counts the intent's changes (gap-free, from 1); ``type`` is
    ``payment_intent.created``/``.updated``, ``attempt.created``/``.updated`` or
    ``refund.created``/``.updated``; ``data`` is the object as it was after the change, in
    its API shape, and ``object`` the same parsed: a ``PaymentIntent``, ``Attempt`` or
    ``Refund`` (``None`` for a type this SDK version does not know).
    """

    sequence: int
    type: str
    object_id: str
    data: JSONObject
    object: PaymentIntent | Attempt | Refund | None = None
    created_at: datetime | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HistoryEvent:
        type_ = _str(data, "type") or ""
        obj = _obj(data, "data") or {}
        parse = _HISTORY_OBJECTS.get(type_.rpartition(".")[0])
        return cls(
            sequence=_int(data, "sequence") or 0,
            type=type_,
            object_id=_str(data, "objectId") or "",
            data=obj,
            object=parse(obj) if parse is not None else None,
            created_at=_time(data, "createdAt"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Event:
    """A webhook payload: ``type`` (e.g. ``payment_intent.succeeded``), ``created_at`` (its
    ``timestamp``), ``data`` (the object) and ``event_id`` (the ``webhook-id``). An intent's
    history is a list of ``HistoryEvent``."""

    type: str | None
    data: JSONObject
    event_id: str | None = None
    created_at: datetime | None = None
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str | None:
        return self.event_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            type=_str(data, "type"),
            data=_obj(data, "data") or {},
            event_id=_str(data, "eventId") or _str(data, "id"),
            created_at=_time(data, "createdAt") or _time(data, "timestamp"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class WebhookEndpoint:
    """A webhook endpoint. ``secret`` (``whsec_…``) is only in ``create``'s answer and is
    hidden from ``repr``."""

    webhook_endpoint_id: str
    url: str | None
    events: tuple[str, ...] | None
    secret: str | None = field(default=None, repr=False)
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.webhook_endpoint_id

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        events = data.get("events")
        return cls(
            webhook_endpoint_id=_str(data, "webhookEndpointId") or _str(data, "id") or "",
            url=_str(data, "url"),
            events=tuple(e for e in events if isinstance(e, str))
            if isinstance(events, list)
            else None,
            secret=_str(data, "secret"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: ``data`` (newest first for intents) and ``has_more``."""

    data: tuple[T, ...]
    has_more: bool
    raw: JSONObject = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
