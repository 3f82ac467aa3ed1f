"""The connector interface: how the gateway talks to any card processor.

The gateway only ever sees these types. A connector turns whatever its processor says
into a :class:`ChargeOutcome`, and the one rule every connector keeps is that anything
it cannot classify with certainty is ``UNKNOWN`` (never ``FAILED``): an unknown attempt
is asked about again later, a failed one may be charged again with another card.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "CaptureRequest",
    "CardDetails",
    "ChargeOutcome",
    "ChargeRequest",
    "ChargeResult",
    "Connector",
    "ConnectorError",
    "RefundRequest",
    "RefundResult",
    "SettlementRecord",
    "SyncKind",
    "VoidRequest",
]

# What :meth:`Connector.lookup` looks up by the gateway's reference.
SyncKind = Literal["charge", "capture", "void"]


class ChargeOutcome(str, enum.Enum):
    APPROVED = "approved"  # money taken (for a refund: refunded)
    DECLINED = "declined"  # the processor said no (decline_code set; for a refund: refused)
    FAILED = "failed"  # the processor answered definitively that nothing was charged
    RETRY = "retry"  # nothing charged; retry later with the SAME reference
    UNKNOWN = "unknown"  # timeout, network or unclassifiable answer: NEVER a failure
    NOT_FOUND = "not_found"  # lookup only: the processor has no record of the reference


class ConnectorError(Exception):
    """A request whose answer is not an outcome (e.g. a settlement report) failed."""


@dataclass(frozen=True, slots=True, repr=False)
class CardDetails:
    number: str
    exp_month: int
    exp_year: int
    cvc: str | None = None

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:
        # Never the number or the CVC: this object ends up in logs and tracebacks.
        cvc = "None" if self.cvc is None else "'***'"
        return (
            f"CardDetails(number='****{self.last4}', exp_month={self.exp_month}, "
            f"exp_year={self.exp_year}, cvc={cvc})"
        )


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    reference: str  # the processor's idempotency key: one per attempt, reused on retry
    payment_intent_id: str
    merchant_id: str
    amount: int  # minor units
    currency: str
    card: CardDetails
    capture: bool = True  # False: authorize only (hold the amount; captured or voided later)


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    reference: str  # the capture's own idempotency key at the processor
    charge_reference: str  # the authorization's
    amount: int  # at most what is held; the rest is released
    currency: str


@dataclass(frozen=True, slots=True)
class VoidRequest:
    reference: str  # the void's own idempotency key at the processor
    charge_reference: str  # the authorization's


@dataclass(frozen=True, slots=True)
class ChargeResult:
    reference: str
    outcome: ChargeOutcome
    auth_code: str | None = None
    decline_code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    reference: str  # idempotency key of the refund at the processor
    charge_reference: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class RefundResult:
    reference: str
    outcome: ChargeOutcome  # APPROVED refunded; DECLINED/FAILED refused; RETRY; UNKNOWN
    message: str | None = None


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    kind: Literal["charge", "capture", "refund"]  # what settles: never an uncaptured authorization
    reference: str
    payment_intent_id: str | None
    charge_reference: str | None
    amount: int
    currency: str
    merchant_id: str | None = None


@runtime_checkable
class Connector(Protocol):
    """One card processor. Implementations must be safe to share between tasks."""

    name: str

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """Charge once per ``request.reference``. Never raises on network trouble:
        returns ``UNKNOWN``."""
        ...

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        """Capture an authorization once per ``request.reference``: APPROVED captured,
        DECLINED refused (``decline_code`` says why, e.g. ``authorization_expired``);
        never raises on network trouble."""
        ...

    async def void(self, request: VoidRequest) -> ChargeResult:
        """Void an authorization once per ``request.reference``: APPROVED voided,
        DECLINED refused; never raises on network trouble."""
        ...

    async def lookup(self, reference: str, kind: SyncKind = "charge") -> ChargeResult:
        """What the processor recorded for the charge (or authorization), capture or void
        with this reference: APPROVED, DECLINED, NOT_FOUND or UNKNOWN."""
        ...

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund once per ``request.reference``; never raises on network trouble."""
        ...

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        """Settled charges, captures and refunds of a UTC day; raises :class:`ConnectorError`."""
        ...

    async def aclose(self) -> None: ...
