"""The connector interface: how the gateway talks to any card processor.

The gateway only ever sees these types. A connector turns whatever its processor says
into a :class:`ChargeOutcome`, and the one rule every connector keeps is that anything
it cannot classify with certainty is ``UNKNOWN`` (never ``FAILED``): an unknown attempt
is asked about again later, a failed one may be charged again with another card.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, runtime_checkable

from paygate_server.currencies import format_minor

__all__ = [
    "CaptureRequest",
    "CardDetails",
    "ChargeOutcome",
    "ChargeRequest",
    "ChargeResult",
    "Connector",
    "ConnectorError",
    "ConnectorKind",
    "OtherAccountItem",
    "ProcessorEvent",
    "RefundRequest",
    "RefundResult",
    "SettlementRecord",
    "SyncKind",
    "VoidRequest",
    "WebhookRejected",
    "WebhookReply",
    "is_definitive",
    "other_money",
]

# What :meth:`Connector.lookup` looks up by the gateway's reference ("charge" covers an
# authorization too), and what a processor's notification is about.
SyncKind = Literal["charge", "capture", "void", "refund"]


class ChargeOutcome(str, enum.Enum):
    APPROVED = "approved"  # money taken (for a refund: refunded)
    DECLINED = "declined"  # the processor said no (decline_code set; for a refund: refused)
    FAILED = "failed"  # the processor answered definitively that nothing was charged
    RETRY = "retry"  # nothing charged; retry later with the SAME reference
    UNKNOWN = "unknown"  # timeout, network or unclassifiable answer: NEVER a failure
    NOT_FOUND = "not_found"  # lookup only: the processor has no record of the reference


class ConnectorError(Exception):
    """A request whose answer is not an outcome (e.g. a settlement report) failed."""


class WebhookRejected(ConnectorError):
    """A processor notification that cannot be verified (no, stale or wrong signature) or
    read: answered ``400`` and nothing of it applied. The text names the reason only,
    never a secret or the body."""


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
    # Called with the processor's id of the payment object before the step that moves
    # money, by connectors whose processor cannot be asked by the gateway's reference
    # (e.g. Stripe: create, record the id, then confirm). It returns once the id is
    # committed; if it raises, the connector does not go on (nothing charged: FAILED).
    record_processor_id: Callable[[str], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    reference: str  # the capture's own idempotency key at the processor
    charge_reference: str  # the authorization's
    amount: int  # at most what is held; the rest is released
    currency: str
    charge_processor_id: str | None = None  # the authorization's id at the processor


@dataclass(frozen=True, slots=True)
class VoidRequest:
    reference: str  # the void's own idempotency key at the processor
    charge_reference: str  # the authorization's
    charge_processor_id: str | None = None  # the authorization's id at the processor


@dataclass(frozen=True, slots=True)
class ChargeResult:
    reference: str
    outcome: ChargeOutcome
    auth_code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    processor_id: str | None = None  # the processor's id of the payment, when it says it
    # The money the processor says the operation moved (held, for an authorization), in the
    # gateway's minor units, when its answer or notification says: checked against the
    # operation's own before it settles anything (processing/settle.py, other_money).
    amount: int | None = None
    currency: str | None = None
    # RETRY only: how long the processor asked to be left alone (its Retry-After), if it said.
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class RefundRequest:
    reference: str  # idempotency key of the refund at the processor
    charge_reference: str
    amount: int
    currency: str
    charge_processor_id: str | None = None  # the charge's id at the processor


@dataclass(frozen=True, slots=True)
class RefundResult:
    reference: str
    outcome: ChargeOutcome  # APPROVED refunded; DECLINED/FAILED refused; RETRY; UNKNOWN
    message: str | None = None
    amount: int | None = None  # as ChargeResult's: what the processor says was refunded
    currency: str | None = None
    retry_after_s: float | None = None  # as ChargeResult's


_DEFINITIVE = (ChargeOutcome.APPROVED, ChargeOutcome.DECLINED, ChargeOutcome.FAILED)
_Result = TypeVar("_Result", ChargeResult, RefundResult)


def is_definitive(outcome: ChargeOutcome) -> bool:
    """The processor said yes or no (as opposed to: unknown, try again, never heard of it)."""
    return outcome in _DEFINITIVE


def other_money(result: _Result, amount: int, currency: str) -> _Result:
    """``result`` as the outcome of an operation of ``amount`` ``currency``: unchanged when
    it states no money or the same, else UNKNOWN (docs/processors.md, "Amounts and
    currencies"). A capture notification for less than was captured, a refund in another
    currency, a partial authorization: none is the outcome of the operation the gateway
    sent, and settling it would record money that did not move. It stays for the operator
    (``paygate reconcile`` lists it), with what the processor said in its message. Every
    answer, look-up and notification that states money passes here: the connectors' own
    answers before they return, the reconciler's look-ups and the notifications."""
    if not is_definitive(result.outcome):
        return result
    stated_amount = amount if result.amount is None else result.amount
    stated_currency = currency if result.currency is None else result.currency
    if (stated_amount, stated_currency) == (amount, currency):
        return result
    said = f"{format_minor(stated_amount, stated_currency)} {stated_currency[:3]}"
    return dataclasses.replace(result, outcome=ChargeOutcome.UNKNOWN, message=(
        f"the processor says {said} {'moved' if result.outcome is ChargeOutcome.APPROVED else 'was refused'}, "
        f"not the {format_minor(amount, currency)} {currency} sent: not settled, for the operator"))


@dataclass(frozen=True, slots=True)
class SettlementRecord:
    kind: Literal["charge", "capture", "refund"]  # what settles: never an uncaptured authorization
    reference: str
    payment_intent_id: str | None
    charge_reference: str | None
    amount: int
    currency: str
    merchant_id: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessorEvent:
    """One outcome a processor's notification states, about one operation.

    ``result.reference`` is the gateway's reference of the operation when the notification
    carries it ("" when it does not); ``payment_processor_id`` is the processor's id of the
    payment the operation belongs to (a Stripe payment intent, an Adyen payment's
    ``pspReference``). The gateway finds the operation by the first, else by the second and
    ``kind``. Only outcomes are events: APPROVED or DECLINED (FAILED for "nothing done")."""

    kind: SyncKind
    result: ChargeResult
    payment_processor_id: str | None = None


@dataclass(frozen=True, slots=True)
class OtherAccountItem:
    """A verified item of a notification about another account at the processor than the
    connector's (Adyen: a company-level webhook carries every merchant account's items):
    not read by this connector. ``index``: its place in the batch; ``account``: the
    processor's name of the account (Adyen's ``merchantAccountCode``); ids, for the log."""

    index: int
    account: str
    processor_id: str | None = None
    event_code: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """A verified notification: what it says, and the answer its processor expects.
    ``other_accounts``: its verified items for other accounts at the processor, not read."""

    events: tuple[ProcessorEvent, ...]
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    other_accounts: tuple[OtherAccountItem, ...] = ()


@runtime_checkable
class Connector(Protocol):
    """One card processor. Implementations must be safe to share between tasks."""

    name: str
    #: How long (s) the processor answers an operation sent again under the same reference
    #: with its first answer (its idempotency keys' lifetime), for a processor whose look-ups
    #: cannot tell (they answer UNKNOWN): within it, the reconciler sends a capture, void or
    #: refund it has no outcome for again — else one the processor never received would wait
    #: for a notification that cannot come. 0: look-ups tell, and an operation is sent again
    #: only once one says "not found".
    resend_answers_s: float

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

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        """What the processor recorded for the charge (or authorization), capture, void or
        refund with this reference: APPROVED, DECLINED, NOT_FOUND or UNKNOWN.
        ``processor_id``: the processor's id of the payment it belongs to, if recorded
        (for a charge, its own). A processor that cannot be asked answers UNKNOWN."""
        ...

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Refund once per ``request.reference``; never raises on network trouble."""
        ...

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        """Settled charges, captures and refunds of a UTC day; raises :class:`ConnectorError`."""
        ...

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> ChargeResult | None:
        """Release an authorization whose outcome never arrived, by the gateway's reference,
        for a processor that cannot be asked about it (lookups always UNKNOWN): the outcome
        comes by notification. APPROVED: the processor has the request (not its outcome);
        UNKNOWN: whether it has it is not known (sent again, with the same key); FAILED or
        RETRY: not done. A processor that answers look-ups has nothing to do here: None,
        nothing sent."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        """Verify and read one of the processor's notifications (``headers`` with
        lower-case names); raises :class:`WebhookRejected` when it cannot be verified."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ConnectorKind:
    """A kind of processor account (SPEC §7): what it is configured with, and how its
    connector is built. Each connector module exposes one as ``KIND``.

    ``settings``: name → default (``None``: required), stored in the clear;
    ``credentials``: the required secret names, stored sealed; ``build(settings,
    credentials, **options)`` gets both complete (defaults filled in) and the gateway's
    transport options (``connect_timeout``, ``read_timeout``, ``max_connections``,
    ``transport``)."""

    name: str
    settings: Mapping[str, str | None]
    credentials: tuple[str, ...]
    build: Callable[..., Connector]

    def complete_settings(self, given: Mapping[str, str]) -> dict[str, str]:
        """``given`` with defaults filled in; raises ValueError naming an unknown or
        missing setting."""
        unknown = sorted(set(given) - set(self.settings))
        if unknown:
            raise ValueError(f"{self.name} has no setting {unknown[0]!r} (settings: {', '.join(self.settings)})")
        complete = {name: given.get(name, default) for name, default in self.settings.items()}
        missing = [name for name, value in complete.items() if not value]
        if missing:
            raise ValueError(f"{self.name} needs the setting {missing[0]!r}")
        return {name: value for name, value in complete.items() if value is not None}

    def check_credentials(self, given: Mapping[str, str]) -> None:
        """Raises ValueError naming an unknown or missing credential (never its value)."""
        unknown = sorted(set(given) - set(self.credentials))
        if unknown:
            raise ValueError(f"{self.name} has no credential {unknown[0]!r} "
                             f"(credentials: {', '.join(self.credentials) or 'none'})")
        missing = [name for name in self.credentials if not given.get(name)]
        if missing:
            raise ValueError(f"{self.name} needs the credential {missing[0]!r}")
