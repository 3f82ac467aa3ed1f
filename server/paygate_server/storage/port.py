"""The payment core's storage port: what the operations ask of the database, and nothing else.

One interface (:class:`PaymentStore`, after hyperswitch's ``StorageInterface``), one
implementation per database (:mod:`.payments`: SQLite and the general form,
:mod:`.payments_pg`: PostgreSQL's one-statement forms), chosen by :func:`open_payment_store`
— the only place that looks at the database kind for the payment core.

The types here are the domain's side of the port: commands in (:class:`NewAttempt`,
:class:`KeyClaim`, :class:`Outcome`), plain rows (mappings keyed by column name) and small
results out. Refusals are exceptions the operations turn into API errors:

    StoreRefusal
    ├── IntentMissing          no such intent for this merchant
    ├── IntentNotInStatus      the intent's status does not allow the change
    ├── TooManyFailures        the card-testing limit (SPEC §5)
    ├── AttemptInFlight        another attempt is pending or already succeeded
    ├── TokenSpent             the card token was used (or expired) since it was read
    ├── OverRefund             more than what remains refundable
    └── OverCapture            more than what is held
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AnswerSpec",
    "Attempt",
    "AttemptInFlight",
    "Check",
    "ExistingKey",
    "IntentMissing",
    "IntentNotInStatus",
    "KeyClaim",
    "LateOutcome",
    "NewAttempt",
    "NewCapture",
    "NewRefund",
    "NewVoid",
    "Outcome",
    "OverCapture",
    "OverRefund",
    "ProcessorIdNotRecorded",
    "PaymentStore",
    "Row",
    "StoreRefusal",
    "TokenSpent",
    "TooManyFailures",
    "claim_abandoned",
]

Row = Mapping[str, Any]


class StoreRefusal(Exception):
    """The store changed nothing because the change is not allowed (see the module tree)."""


class IntentMissing(StoreRefusal):
    pass


class IntentNotInStatus(StoreRefusal):
    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class TooManyFailures(StoreRefusal):
    pass


class AttemptInFlight(StoreRefusal):
    pass


class TokenSpent(StoreRefusal):
    pass


class OverRefund(StoreRefusal):
    def __init__(self, remaining: int | None) -> None:
        super().__init__(remaining)
        self.remaining = remaining  # None: the guard lost a race, the figure moved


class ProcessorIdNotRecorded(StoreRefusal):
    """The attempt is no longer pending (settled, or unknown: its request is over), or holds
    another processor id: the id was not recorded, so nothing that would move money under it
    may be sent (``ChargeRequest.record_processor_id``)."""


class OverCapture(StoreRefusal):
    def __init__(self, capturable: int) -> None:
        super().__init__(capturable)
        self.capturable = capturable


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """An ``Idempotency-Key`` to claim in the same transaction (or statement) as a change.

    ``key`` is the digest of the client's key and ``request_hash`` the request's, both in
    letters (:mod:`paygate_server.letter_digests`); ``stale_before`` (µs) is when an
    ``in_progress`` claim counts as abandoned (:func:`claim_abandoned`); ``seal`` turns an
    answer into what is stored (the answers are sealed, http/api.py); keys created before
    ``kept_since`` (µs: now − the TTL) are past their time (storage/idempotency_forms.py)."""

    merchant_id: str
    key: str
    request_hash: str
    stale_before: int
    seal: Callable[[bytes], bytes]
    kept_since: int


@dataclass(frozen=True, slots=True)
class ExistingKey:
    """The key was there already: nothing changed. The endpoint judges it (replay, 409, 422),
    unless it is ``abandoned`` (:func:`claim_abandoned`): then the operation answers with what
    the claim began — the intent, or the refund ``resource_id`` — as it is now."""

    request_hash: str
    state: str
    locked_at: int
    response_status: int | None
    response_body: bytes | None
    resource_id: str | None = None
    abandoned: bool = False
    # Found under the key's hex spelling, written by the code before migration 0019: its
    # answer is sealed under that digest (``request_hash`` is given in letters either way).
    in_hex: bool = False


def claim_abandoned(found: ExistingKey, claim: KeyClaim) -> bool:
    """The same request's claim, still ``in_progress`` past ``claim.stale_before``: its
    holder was cut off (a crash, a failed write) after its first phase committed — a claim
    commits only with the change it guards. Its operation is never begun again: what it
    began is the reconciler's to settle, and the request is answered with that as it is."""
    return (found.request_hash == claim.request_hash and found.state == "in_progress"
            and found.locked_at < claim.stale_before)


@dataclass(frozen=True, slots=True)
class AnswerSpec:
    """The request's answer, stored with the change that settles it (same transaction)."""

    claim: KeyClaim
    render: Callable[[Row], bytes]  # the answer's body for the row after the change


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """Starting a charge attempt: the intent moves to ``in_progress`` with the card's summary."""

    merchant_id: str
    intent_id: str
    card: dict[str, Any]  # brand, last4, expMonth, expYear: never the number
    card_fingerprint: str | None
    vault_id: str | None  # the checkout token's vault row, consumed by the attempt
    connector: str
    check_after_us: int  # the reconciler owns the attempt after this long
    max_failed_attempts: int


@dataclass(frozen=True, slots=True)
class Attempt:
    transaction_id: str
    reference: str
    intent_id: str
    merchant_id: str
    amount: int
    currency: str
    kind: str = "charge"  # charge | authorization | capture | void
    charge_reference: str | None = None  # a capture's or void's: its authorization's reference
    connector: str = ""  # where it goes: a processor account (pa_…) or the default connector's name
    # The processor's id of the payment it belongs to, if recorded: a charge's own, a
    # capture's or void's authorization's.
    processor_id: str | None = None

    @classmethod
    def of(cls, row: Row) -> Attempt:
        """The operation as ``attempt_for_check`` / ``find_operation`` read it."""
        return cls(row["id"], row["reference"], row["intent_id"], row["merchant_id"], row["amount"], row["currency"],
                   row["kind"], row["charge_reference"], row["connector"], row["processor_id"])


@dataclass(frozen=True, slots=True)
class NewCapture:
    """Capturing a held authorization: all of it (``amount`` None) or part, the rest released."""

    merchant_id: str
    intent_id: str
    amount: int | None
    check_after_us: int


@dataclass(frozen=True, slots=True)
class NewVoid:
    """Voiding a held authorization; ``reason`` becomes the intent's cancellation reason."""

    merchant_id: str
    intent_id: str
    reason: str  # requested | expired
    check_after_us: int


@dataclass(frozen=True, slots=True)
class NewRefund:
    merchant_id: str
    intent_id: str
    amount: int | None  # None: what remains
    reason: str | None
    check_after_us: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the processor said about an operation, as the store writes it.

    ``status`` ``succeeded``/``failed`` settles it once; ``unknown`` marks it so and moves
    its reconciler check to ``due_at``."""

    status: str
    auth_code: str | None = None
    decline_code: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    intent_error: str | None = None  # the intent's ``last_error`` (JSON) on a failed charge
    due_at: int = 0  # unknown only
    checks: int = 0  # unknown only: the checks made (0: the request's own answer, see defer_check)
    last_result: str | None = None  # unknown only
    # A capture's or void's: where its intent goes (succeeded, canceled, back to
    # requires_capture), and why it is canceled (requested | expired; None: the void's reason).
    intent_status: str | None = None
    cancellation_reason: str | None = None
    processor_id: str | None = None  # the processor's id of the operation's object, if it said it


@dataclass(frozen=True, slots=True)
class LateOutcome:
    """A processor's word that contradicts an outcome settled already (``late_outcomes``):
    the operation keeps its status, the operator is told."""

    kind: str  # capture | void | refund
    object_id: str
    intent_id: str
    merchant_id: str
    connector: str
    gateway_status: str  # what the gateway had settled
    processor_status: str  # what the processor said later
    processor_text: str | None  # masked (processing/connectors/_transport.py processor_text)
    received_at: int
    id: int = 0  # 0 until stored
    handled_at: int | None = None
    handled_by: str | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """A row of the reconciler's queue."""

    kind: str  # charge (a charge or an authorization) | capture | void | refund
    object_id: str
    intent_id: str
    merchant_id: str
    due_at: int
    checks: int
    last_result: str | None
    created_at: int


class PaymentStore(Protocol):
    """The payment core's operations on storage. Every change is atomic; every settle
    applies once (a second settle of the same attempt or refund changes nothing)."""

    # Intents
    async def create_intent(self, row: Row, claim: KeyClaim | None, answer: bytes) -> ExistingKey | None: ...
    async def get_intent(self, merchant_id: str, intent_id: str) -> Row | None: ...
    async def checkout_intent(self, secret_hash: str) -> tuple[Row, int] | None:
        """The intent whose client secret hashes to ``secret_hash``, and how many
        tokenizations its checkout has counted (``checkout_limits``); None if none."""
    async def list_intents(self, merchant_id: str, *, limit: int, starting_after: str | None,
                           status: str | None) -> tuple[list[Row], bool]: ...
    async def cancel_intent(self, merchant_id: str, intent_id: str,
                            answer: AnswerSpec | None) -> Row | ExistingKey: ...

    # Charges
    async def begin_attempt(self, new: NewAttempt, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey: ...
    async def settle_attempt(self, attempt: Attempt, outcome: Outcome, *, before: Row | None = None,
                             answer: AnswerSpec | None = None) -> tuple[Row | None, bool]: ...
    async def attempt_for_check(self, transaction_id: str) -> Row | None: ...
    async def redeem_token(self, vault_id: str) -> bool: ...
    async def record_processor_id(self, transaction_id: str, processor_id: str) -> None:
        """Raises ProcessorIdNotRecorded unless the pending attempt now holds ``processor_id``."""
        ...
    async def fail_over(self, attempt: Attempt, outcome: Outcome, connector: str,
                        check_after_us: int) -> Attempt | None: ...
    async def find_operation(self, connector: str, kind: str, reference: str,
                             payment_processor_id: str | None) -> Row | None: ...

    # Captures and voids of held authorizations (manual capture)
    async def begin_capture(self, new: NewCapture, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey: ...
    async def begin_void(self, new: NewVoid, claim: KeyClaim | None) -> tuple[Row, Attempt] | ExistingKey: ...
    async def settle_follow_up(self, attempt: Attempt, outcome: Outcome,
                               answer: AnswerSpec | None = None) -> tuple[Row | None, bool]: ...
    async def expired_holds(self, authorized_before: int, limit: int) -> list[Row]: ...

    # Refunds
    async def reserve_refund(self, new: NewRefund, claim: KeyClaim | None) -> Row | ExistingKey: ...
    async def settle_refund(self, refund_id: str, outcome: Outcome,
                            answer: AnswerSpec | None = None) -> Row | None: ...
    async def get_refund(self, refund_id: str) -> Row | None: ...
    async def refund_for_check(self, refund_id: str) -> Row | None: ...

    # Idempotency keys beyond the claims above
    async def change_with_key(self, claim: KeyClaim | None,
                              change: Callable[[Any], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes] | ExistingKey: ...
    async def find_key(self, claim: KeyClaim) -> ExistingKey | None: ...
    async def store_answer(self, claim: KeyClaim, status: int, body: bytes) -> bool: ...
    async def stored_answer(self, claim: KeyClaim) -> tuple[int, bytes] | None: ...
    async def prune_keys(self, created_before: int) -> int: ...

    # The reconciler's queue and the settlement report
    async def due_checks(self, now: int, limit: int) -> list[Check]: ...
    async def next_check_due(self) -> int | None: ...
    async def lease_check(self, check: Check, until: int) -> bool: ...
    async def all_checks(self) -> list[Check]: ...
    async def check_of(self, kind: str, object_id: str) -> Check | None: ...
    async def settled_records(self, kind: str, connector: str, references: Sequence[str],
                              start: int, end: int) -> list[Row]: ...

    # Outcomes a processor contradicted after they settled (late_outcomes)
    async def record_late_outcome(self, late: LateOutcome) -> bool: ...
    async def late_outcomes(self, *, limit: int) -> list[LateOutcome]: ...
