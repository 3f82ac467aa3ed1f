"""The ``process`` operation, in phases (after hyperswitch and rocket-rides-atomic):

1. validate (the endpoint) — nothing stored on a bad request;
2. persist the attempt: intent ``in_progress`` + ``pending`` attempt with its processor
   reference and its reconciler check, committed *before* the processor hears of it — with
   the request's Idempotency-Key claimed in the same transaction (or statement);
3. call the connector with that reference as the processor's idempotency key — a retry of
   the same attempt reuses it, so the processor can never charge twice;
4. record the outcome once (:mod:`.settle`; or ``unknown`` + the reconciler's next check),
   with the request's answer where the outcome's transaction can store it;
5. answer within the wait budget; the call goes on in the background if it takes longer,
   and the reconciler covers a crash anywhere.

The same phases serve a manual capture's ``capture`` and ``cancel`` (a void): each is an
operation of its own with its own reference, committed before the processor hears of it.

A command in (:class:`ProcessPayment`, :class:`CapturePayment`), a domain result out
(:class:`Processed`); the endpoint turns it into HTTP.
"""
from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from paygate_server import jsoncodec
from paygate_server.cards.resolved import ResolvedCard
from paygate_server.faults import crash_point
from paygate_server.intents.refusals import refusal_error
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.calls import DEADLINE_PASSED, call_at_processor, deadline_for
from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    Connector,
    VoidRequest,
    is_definitive,
)
from paygate_server.processing.settle import unknown_outcome
from paygate_server.processors.routing import Payment
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    ExistingKey,
    IntentNotInStatus,
    KeyClaim,
    NewAttempt,
    NewCapture,
    NewVoid,
    Outcome,
    Row,
    StoreRefusal,
)

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["HOLD_GONE", "MAX_FAILED_ATTEMPTS", "CapturePayment", "ProcessPayment", "Processed", "ProcessingService",
           "charge_outcome", "follow_up_outcome"]

# The processor said "nothing charged, try again" (e.g. 503): same reference, short backoff.
RETRY_DELAYS_S = (0.2, 0.5, 1.0)
_DEADLINE_PASSED = ChargeResult("", ChargeOutcome.UNKNOWN, message=DEADLINE_PASSED)
# Card-testing limit (SPEC §5): past this many failed attempts an intent is refused.
MAX_FAILED_ATTEMPTS = 10
_US = 1_000_000
_DECLINE_MESSAGES = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "invalid_number": "The card number is invalid.",
}


@dataclass(frozen=True, slots=True)
class ProcessPayment:
    merchant_id: str
    intent_id: str
    card: ResolvedCard


@dataclass(frozen=True, slots=True)
class CapturePayment:
    merchant_id: str
    intent_id: str
    amount: int | None  # None: all that is held


@dataclass(frozen=True, slots=True)
class Processed:
    intent: Row  # as it is when the answer is due: settled, or still in_progress
    answer: bytes | None  # the request's answer as stored with the outcome (None: not stored)


def charge_outcome(result: ChargeResult, *, schedule: tuple[float, ...], checks: int = 0,
                   check_by: int | None = None) -> Outcome:
    """What a charge's answer writes (the request's and the reconciler's alike)."""
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded", auth_code=result.auth_code, processor_id=result.processor_id)
    if result.outcome is ChargeOutcome.DECLINED:
        error: dict[str, str | None] = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                                        "message": _DECLINE_MESSAGES.get(result.decline_code or "",
                                                                    "The card was declined.")}
    elif result.outcome is ChargeOutcome.FAILED:  # the processor said nothing was charged
        error = {"code": "processing_error", "declineCode": None,
                 "message": "The processor could not process the payment. Try again or use another card."}
    else:
        return unknown_outcome(result.outcome, result.message, schedule, checks, check_by, result.processor_id)
    # The customer and the merchant read lastError; the operator, on the attempt, why the
    # processor (or the connector, before sending anything) said nothing was charged: a
    # refused key, an amount it cannot take. (A decline's reason is its decline code.)
    said = result.message if result.outcome is ChargeOutcome.FAILED and result.message else error["message"]
    return Outcome("failed", decline_code=error["declineCode"], error_code=error["code"],
                   error_message=said, intent_error=jsoncodec.dumps(error).decode(),
                   processor_id=result.processor_id)


def _without_security_code(result: ChargeResult, cvc: str | None) -> ChargeResult:
    """``result`` with the card's security code masked in the processor's text: what a
    processor says of an attempt it did not settle is kept (the attempt's error, the
    change history, the archive, the console), and a processor's validation message or
    debug echo may quote the code it was sent. Card numbers are dropped when the text is
    read (``processor_text``); the code is only known here, where the charge is sent."""
    if not cvc or not result.message or cvc not in result.message:
        return result
    masked = re.sub(rf"(?<!\d){re.escape(cvc)}(?!\d)", "[removed]", result.message)
    return dataclasses.replace(result, message=masked)


def _unusable(reference: str, exc: Exception) -> ChargeResult:
    """The outcome of an operation whose route this process cannot reach (an account gone, a
    default of another kind: ``ProcessorRoutes.connector``): nothing was sent."""
    return ChargeResult(reference, ChargeOutcome.FAILED,
                        message=f"processor account unusable ({type(exc).__name__}): nothing sent")


# A capture or void refused because the hold is gone: the intent ends canceled, expired.
HOLD_GONE = frozenset({"authorization_expired", "authorization_voided"})
_REFUSED_MESSAGES = {
    "capture": "The processor refused the capture; the authorization is still held.",
    "void": "The processor refused to void the authorization; it is still held.",
}


def follow_up_outcome(kind: str, result: ChargeResult, *, schedule: tuple[float, ...], checks: int = 0,
                      check_by: int | None = None, not_before: int | None = None) -> Outcome:
    """A capture's or void's outcome, with where its intent goes: done (``succeeded`` /
    ``canceled``), the hold gone (``canceled``, ``expired``), or refused with nothing
    changed (back to ``requires_capture`` with ``lastError``)."""
    if not is_definitive(result.outcome):
        return unknown_outcome(result.outcome, result.message, schedule, checks, check_by, not_before=not_before)
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded", intent_status="succeeded" if kind == "capture" else "canceled")
    code = result.decline_code or "processing_error"
    if code in HOLD_GONE:
        return Outcome("failed", decline_code=code, error_code=code, error_message=result.message,
                       intent_status="canceled", cancellation_reason="expired")
    error = {"code": "processing_error", "declineCode": code, "message": _REFUSED_MESSAGES[kind]}
    return Outcome("failed", decline_code=code, error_code="processing_error", error_message=result.message,
                   intent_error=jsoncodec.dumps(error).decode(), intent_status="requires_capture")


class _Rendered:
    """The answer stored with the outcome, kept: the response is that body (one rendering)."""

    __slots__ = ("body",)

    def __init__(self) -> None:
        self.body = b""

    def __call__(self, row: Row) -> bytes:
        self.body = jsoncodec.dumps(render_intent(row))
        return self.body


class ProcessingService:
    def __init__(self, gateway: Gateway, connector: Connector) -> None:
        self._gateway = gateway
        self.connector = connector
        self._tasks: set[asyncio.Task[Any]] = set()

    async def process(self, command: ProcessPayment, claim: KeyClaim | None) -> Processed | ExistingKey:
        gateway = self._gateway
        settings = gateway.settings
        store = gateway.payments
        card = command.card
        routes = await self._routes(command)
        new = NewAttempt(command.merchant_id, command.intent_id, card.summary, card.fingerprint, card.vault_id,
                         routes[0], int(settings.in_flight_grace_s * _US), MAX_FAILED_ATTEMPTS)
        deadline = deadline_for(settings)
        try:
            begun = await store.begin_attempt(new, claim)
        except StoreRefusal as refusal:
            raise refusal_error(refusal, command.intent_id, "processed") from None
        if isinstance(begun, ExistingKey):
            return await self.resumed(begun, command.merchant_id, command.intent_id)
        before, attempt = begun
        gateway.notifier.publish(command.intent_id)
        crash_point(settings.fault_point, "after_attempt_commit")

        return await self._within_budget(attempt, self._charge(attempt, card, before, claim, routes[1:], deadline))

    async def resumed(self, existing: ExistingKey, merchant_id: str, intent_id: str) -> Processed | ExistingKey:
        """A key that was there, for the endpoint to judge — unless it is abandoned (its
        request was cut off after its first phase committed): then the intent as it is now,
        which the endpoint stores as the key's answer. What that request began is the
        reconciler's to settle; nothing is begun a second time under one key."""
        if existing.abandoned and (row := await self._gateway.payments.get_intent(merchant_id, intent_id)) is not None:
            return Processed(row, None)
        return existing

    async def _routes(self, command: ProcessPayment) -> tuple[str, ...]:
        """Where the attempt goes (SPEC §7): the merchant's accounts by its routing rules,
        the first first and the rest its failover; the default connector without accounts."""
        routing = await self._gateway.processors.route(command.merchant_id)
        if routing is None:
            return (self.connector.name,)
        intent = await self._gateway.payments.get_intent(command.merchant_id, command.intent_id)
        if intent is None:
            return routing.accounts[:1]  # begin_attempt refuses it: the intent does not exist
        chosen = routing.choose(Payment(intent["currency"], str(command.card.summary["brand"]), intent["amount"],
                                        intent["capture_method"]))
        return chosen or routing.accounts[:1]

    async def _within_budget(self, attempt: Attempt, work: Coroutine[Any, Any, Processed]) -> Processed:
        """Run the processor call and its settle in the background (it outlives a request
        that stops waiting) and answer when it is done or the wait budget is spent."""
        task = asyncio.create_task(work, name=f"{attempt.kind}-{attempt.transaction_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(self._gateway.settings.process_wait_budget_s):  # not wait_for: see waiting.py
                return await asyncio.shield(task)
        except (TimeoutError, Exception):
            pass  # still at the processor, or failed to record: answer with what is stored
        row = await self._gateway.payments.get_intent(attempt.merchant_id, attempt.intent_id)
        assert row is not None
        return Processed(row, None)

    # --- captures and voids of held authorizations (manual capture) -------------------

    async def capture(self, command: CapturePayment, claim: KeyClaim | None) -> Processed | ExistingKey:
        """``requires_capture`` → ``in_progress`` with a ``pending`` capture of all or part
        of the hold (committed with its reference first, like a charge) → the processor."""
        new = NewCapture(command.merchant_id, command.intent_id, command.amount,
                         int(self._gateway.settings.in_flight_grace_s * _US))
        deadline = deadline_for(self._gateway.settings)
        try:
            begun = await self._gateway.payments.begin_capture(new, claim)
        except StoreRefusal as refusal:
            raise refusal_error(refusal, command.intent_id, "captured") from None
        if isinstance(begun, ExistingKey):
            return await self.resumed(begun, command.merchant_id, command.intent_id)
        return await self._follow_up(begun, claim, deadline)

    async def cancel(self, merchant_id: str, intent_id: str, claim: KeyClaim | None) -> Processed | ExistingKey:
        """``created``/``failed`` → ``canceled`` at once; ``requires_capture`` → the hold is
        voided at the processor first (exactly once, like a capture)."""
        store = self._gateway.payments
        rendered = _Rendered()
        try:
            canceled = await store.cancel_intent(merchant_id, intent_id,
                                                 None if claim is None else AnswerSpec(claim, rendered))
            if isinstance(canceled, ExistingKey):
                return await self.resumed(canceled, merchant_id, intent_id)
            return Processed(canceled, rendered.body if claim is not None else None)
        except IntentNotInStatus as refusal:
            if refusal.status != "requires_capture":
                raise refusal_error(refusal, intent_id, "canceled") from None
        except StoreRefusal as refusal:
            raise refusal_error(refusal, intent_id, "canceled") from None
        deadline = deadline_for(self._gateway.settings)
        try:
            begun = await store.begin_void(NewVoid(merchant_id, intent_id, "requested",
                                                   int(self._gateway.settings.in_flight_grace_s * _US)), claim)
        except StoreRefusal as refusal:
            raise refusal_error(refusal, intent_id, "canceled") from None
        if isinstance(begun, ExistingKey):
            return await self.resumed(begun, merchant_id, intent_id)
        return await self._follow_up(begun, claim, deadline)

    async def _follow_up(self, begun: tuple[Row, Attempt], claim: KeyClaim | None, deadline: float) -> Processed:
        _, attempt = begun
        self._gateway.notifier.publish(attempt.intent_id)
        crash_point(self._gateway.settings.fault_point, f"after_{attempt.kind}_commit")
        return await self._within_budget(attempt, self._hold_operation(attempt, claim, deadline))

    async def _hold_operation(self, attempt: Attempt, claim: KeyClaim | None, deadline: float) -> Processed:
        gateway = self._gateway
        assert attempt.charge_reference is not None
        try:
            connector = await gateway.processors.connector(attempt.connector, self.connector)
        except Exception as exc:  # noqa: BLE001 - as a charge's: sent nothing, refused with the hold kept
            result = _unusable(attempt.reference, exc)
        else:
            if attempt.kind == "capture":
                call = partial(connector.capture, CaptureRequest(attempt.reference, attempt.charge_reference,
                                                                 attempt.amount, attempt.currency,
                                                                 attempt.processor_id))
            else:
                call = partial(connector.void, VoidRequest(attempt.reference, attempt.charge_reference,
                                                           attempt.processor_id))
            result = await self._call_processor(call, deadline, answered_point=f"after_{attempt.kind}_answered")
        outcome = follow_up_outcome(attempt.kind, result, schedule=gateway.settings.reconcile_schedule_s)
        rendered = _Rendered()
        settled = await gateway.payments.settle_follow_up(attempt, outcome,
                                                          None if claim is None else AnswerSpec(claim, rendered))
        return await self._recorded(attempt, settled, rendered)

    async def _call_processor(self, call: Callable[[], Awaitable[ChargeResult]], deadline: float, *,
                              answered_point: str | None = None) -> ChargeResult:
        """The attempt's calls, all over by ``deadline`` (processing/calls.py): the
        reconciler relies on no call outliving Settings.in_flight_grace_s."""
        return await call_at_processor(self._gateway.settings, deadline, call, _DEADLINE_PASSED, RETRY_DELAYS_S,
                                       answered_point=answered_point)

    async def _charge(self, attempt: Attempt, card: ResolvedCard, before: Row,
                      claim: KeyClaim | None, failover: tuple[str, ...], deadline: float) -> Processed:
        """Call the processor and record the outcome (with the request's answer, if the
        outcome's transaction can store it). An account that answered that nothing was
        charged hands over to the next of ``failover`` — never on anything less certain."""
        gateway = self._gateway
        store = gateway.payments
        while True:
            request = ChargeRequest(
                reference=attempt.reference, payment_intent_id=attempt.intent_id,
                merchant_id=attempt.merchant_id, amount=attempt.amount, currency=attempt.currency,
                card=card.details, capture=attempt.kind == "charge",
                record_processor_id=partial(store.record_processor_id, attempt.transaction_id),
            )
            try:
                connector = await gateway.processors.connector(attempt.connector, self.connector)
            except Exception as exc:  # noqa: BLE001 - an account that cannot be used was sent nothing
                result = _unusable(attempt.reference, exc)
            else:
                result = _without_security_code(
                    await self._call_processor(partial(connector.charge, request), deadline), card.details.cvc)
            if result.outcome is not ChargeOutcome.FAILED or not failover:
                break
            deadline = deadline_for(gateway.settings)  # the next account's attempt: a deadline of its own
            following = await store.fail_over(attempt, charge_outcome(result, schedule=()), failover[0],
                                              int(gateway.settings.in_flight_grace_s * _US))
            if following is None:  # settled meanwhile (a reconciler): nothing more to do here
                break
            attempt, failover = following, failover[1:]
            gateway.notifier.publish(attempt.intent_id)
        if result.outcome is ChargeOutcome.APPROVED:
            crash_point(gateway.settings.fault_point, "after_processor_approved")
        outcome = charge_outcome(result, schedule=gateway.settings.reconcile_schedule_s)
        rendered = _Rendered()
        answer = None if claim is None else AnswerSpec(claim, rendered)
        settled = await gateway.payments.settle_attempt(attempt, outcome, before=before, answer=answer)
        return await self._recorded(attempt, settled, rendered)

    async def _recorded(self, attempt: Attempt, settled: tuple[Row | None, bool], rendered: _Rendered) -> Processed:
        self._gateway.notifier.publish(attempt.intent_id)
        row, answered = settled
        if row is None:  # a reconciler settled it first: report what is stored
            row = await self._gateway.payments.get_intent(attempt.merchant_id, attempt.intent_id)
            assert row is not None
        return Processed(row, rendered.body if answered else None)

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let in-flight processor calls record their outcome."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self.connector.aclose()
        await self._gateway.processors.aclose()
