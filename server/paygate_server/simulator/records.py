"""What the simulator's ledger holds: charges (and authorizations), refunds, captures and
voids, and what the store decided about a request for one of them.

Plain values, no I/O: the store (``store.py``, with its tables in ``schema.py``: the only
modules with SQL) reads and writes them, the protocol (``protocol.py``) renders them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ALREADY_CAPTURED",
    "AUTHORIZATION_EXPIRED",
    "AUTHORIZATION_VOIDED",
    "ChargeDisposition",
    "ChargeMode",
    "ChargeRecord",
    "CaptureRecord",
    "HoldDisposition",
    "OperationReferences",
    "RefundDisposition",
    "RefundRecord",
    "Settlement",
    "VoidRecord",
]

# Why a capture or a void was refused (``declineCode`` of a ``refused`` answer).
ALREADY_CAPTURED = "already_captured"
AUTHORIZATION_EXPIRED = "authorization_expired"
AUTHORIZATION_VOIDED = "authorization_voided"


@dataclass(frozen=True, slots=True)
class ChargeRecord:
    """A charge (``capture`` true: authorized and captured at once) or an authorization
    (``capture`` false: the amount is held until captured, voided or expired)."""

    reference: str
    payment_intent_id: str
    merchant_id: str
    amount: int
    currency: str
    card_brand: str
    card_last4: str
    status: str  # "approved" | "declined"
    auth_code: str | None
    decline_code: str | None
    created_at: str
    amount_refunded: int = 0
    capture: bool = True
    # An approved authorization's hold ends then (RFC 3339, the simulator's clock); the
    # TTL in force when it was authorized fixes it, as an issuer does.
    expires_at: str | None = None
    # What the one capture of an authorization took (0 until then; automatic charges
    # keep 0 here: see ``captured_amount``).
    amount_captured: int = 0
    voided: bool = False

    def same_request(self, other: ChargeRecord) -> bool:
        """Whether ``other`` asks for the same charge (the idempotency check)."""
        return (
            self.amount == other.amount
            and self.currency == other.currency
            and self.merchant_id == other.merchant_id
            and self.payment_intent_id == other.payment_intent_id
            and self.card_brand == other.card_brand
            and self.card_last4 == other.card_last4
            and self.capture == other.capture
        )

    @property
    def captured_amount(self) -> int:
        """What was taken from the card: the amount of an approved automatic charge, the
        capture of an authorization, nothing otherwise. Refunds are bounded by it."""
        if self.status != "approved":
            return 0
        return self.amount if self.capture else self.amount_captured

    def expired(self, now: str) -> bool:
        """An approved, uncaptured, unvoided authorization whose hold has ended by
        ``now`` (RFC 3339 strings of one format compare as times)."""
        return (
            self.expires_at is not None
            and not self.capture
            and self.amount_captured == 0
            and not self.voided
            and now >= self.expires_at
        )


@dataclass(frozen=True, slots=True)
class RefundRecord:
    reference: str
    charge_reference: str
    amount: int
    currency: str
    status: str  # "succeeded"
    created_at: str


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """A capture request's recorded result: ``captured`` (``amount`` was taken, the rest
    of the hold released) or ``refused`` (nothing changed; ``decline_code`` says why)."""

    reference: str
    charge_reference: str
    amount: int
    currency: str
    status: str  # "captured" | "refused"
    decline_code: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class VoidRecord:
    reference: str
    charge_reference: str
    status: str  # "voided" | "refused"
    decline_code: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class OperationReferences:
    """The references of the captures, voids and refunds recorded against one charge,
    each in the order recorded (refused captures and voids too: every request recorded
    under a distinct reference). How many operations of a kind reached the charge, which
    its amounts cannot show for a second void, or a refused second capture."""

    captures: tuple[str, ...] = ()
    voids: tuple[str, ...] = ()
    refunds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settled on one day: automatic charges, captures and refunds (each with the
    charge it belongs to). An authorization settles only through its capture."""

    charges: list[ChargeRecord]
    captures: list[tuple[CaptureRecord, ChargeRecord]]
    refunds: list[tuple[RefundRecord, ChargeRecord]]


class ChargeMode(enum.Enum):
    RECORD = "record"  # record the charge unless the reference exists
    ERROR_IF_NEW = "error_if_new"  # never record; replay an existing reference
    RETRY_FIRST = "retry_first"  # first sighting: mark and refuse; second: record


class ChargeDisposition(enum.Enum):
    CREATED = "created"
    EXISTING = "existing"  # the same request again: replay the first result
    CONFLICT = "conflict"  # the reference exists with other details
    ERROR = "error"  # nothing recorded (ERROR_IF_NEW on a new reference)
    RETRY_LATER = "retry_later"  # nothing recorded (RETRY_FIRST, first sighting)


class RefundDisposition(enum.Enum):
    CREATED = "created"
    EXISTING = "existing"
    CONFLICT = "conflict"
    ERROR = "error"  # an injected processing error on a new reference: nothing recorded
    CHARGE_NOT_FOUND = "charge_not_found"
    NOT_REFUNDABLE = "not_refundable"
    EXCEEDS_REMAINING = "exceeds_remaining"


class HoldDisposition(enum.Enum):
    """The store's decision on a capture or a void. ``CREATED`` records a result (which
    may be a refusal: the hold's state answered); the others record nothing."""

    CREATED = "created"
    EXISTING = "existing"  # the same request again: replay the first result
    CONFLICT = "conflict"  # the reference exists with other details
    ERROR = "error"  # an injected processing error on a new reference
    CHARGE_NOT_FOUND = "charge_not_found"  # no charge has this chargeReference
    NOT_AUTHORIZED = "not_authorized"  # the charge was declined: nothing is held
    EXCEEDS_AUTHORIZED = "exceeds_authorized"  # capture amount over the held amount
