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

A command in (:class:`ProcessPayment`), a domain result out (:class:`Processed`); the
endpoint turns it into HTTP.
"""
from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paygate_server import jsoncodec
from paygate_server.cards.resolved import ResolvedCard
from paygate_server.faults import crash_point
from paygate_server.intents.refusals import refusal_error
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    Connector,
)
from paygate_server.processing.settle import unknown_outcome
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    ExistingKey,
    KeyClaim,
    NewAttempt,
    Outcome,
    Row,
    StoreRefusal,
)

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["MAX_FAILED_ATTEMPTS", "ProcessPayment", "Processed", "ProcessingService", "charge_outcome"]

# The processor said "nothing charged, try again" (e.g. 503): same reference, short backoff.
RETRY_DELAYS_S = (0.2, 0.5, 1.0)
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
class Processed:
    intent: Row  # as it is when the answer is due: settled, or still in_progress
    answer: bytes | None  # the request's answer as stored with the outcome (None: not stored)


def charge_outcome(result: ChargeResult, *, schedule: tuple[float, ...], checks: int = 0,
                   check_by: int | None = None) -> Outcome:
    """What a charge's answer writes (the request's and the reconciler's alike)."""
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded", auth_code=result.auth_code)
    if result.outcome is ChargeOutcome.DECLINED:
        error: dict[str, str | None] = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                                        "message": _DECLINE_MESSAGES.get(result.decline_code or "",
                                                                    "The card was declined.")}
    elif result.outcome is ChargeOutcome.FAILED:  # the processor said nothing was charged
        error = {"code": "processing_error", "declineCode": None,
                 "message": "The processor could not process the payment. Try again or use another card."}
    else:
        return unknown_outcome(result.outcome, result.message, schedule, checks, check_by)
    return Outcome("failed", decline_code=error["declineCode"], error_code=error["code"],
                   error_message=error["message"], intent_error=jsoncodec.dumps(error).decode())


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
        new = NewAttempt(command.merchant_id, command.intent_id, card.summary, card.fingerprint, card.vault_id,
                         self.connector.name, int(settings.in_flight_grace_s * _US), MAX_FAILED_ATTEMPTS)
        try:
            begun = await store.begin_attempt(new, claim)
        except StoreRefusal as refusal:
            raise refusal_error(refusal, command.intent_id, "processed") from None
        if isinstance(begun, ExistingKey):
            return begun
        before, attempt = begun
        gateway.notifier.publish(command.intent_id)
        crash_point(settings.fault_point, "after_attempt_commit")

        task = asyncio.create_task(self._charge(attempt, card, before, claim),
                                   name=f"charge-{attempt.transaction_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(settings.process_wait_budget_s):  # not wait_for: see waiting.py
                return await asyncio.shield(task)
        except (TimeoutError, Exception):
            pass  # still at the processor, or failed to record: answer with what is stored
        row = await store.get_intent(command.merchant_id, command.intent_id)
        assert row is not None
        return Processed(row, None)

    async def _call_processor(self, request: ChargeRequest) -> ChargeResult:
        fault = self._gateway.settings.fault_point
        killer = None
        if fault == "during_processor_call":
            # Die while the processor is working on the request (the tests give it latency).
            killer = asyncio.get_running_loop().call_later(0.15, os.kill, os.getpid(), signal.SIGKILL)
        # One hard deadline for every call of this attempt: the reconciler relies on no call
        # outliving Settings.in_flight_grace_s.
        result = ChargeResult(request.reference, ChargeOutcome.UNKNOWN, message="attempt deadline passed")
        try:
            async with asyncio.timeout(self._gateway.settings.attempt_deadline_s):
                result = await self.connector.charge(request)
                for delay in RETRY_DELAYS_S:
                    if result.outcome is not ChargeOutcome.RETRY:
                        break
                    await asyncio.sleep(delay)
                    result = await self.connector.charge(request)  # same reference: never twice
        except TimeoutError:
            pass
        finally:
            if killer is not None:
                killer.cancel()
        return result

    async def _charge(self, attempt: Attempt, card: ResolvedCard, before: Row,
                      claim: KeyClaim | None) -> Processed:
        """Call the processor and record the outcome (with the request's answer, if the
        outcome's transaction can store it)."""
        gateway = self._gateway
        request = ChargeRequest(
            reference=attempt.reference, payment_intent_id=attempt.intent_id,
            merchant_id=attempt.merchant_id, amount=attempt.amount, currency=attempt.currency,
            card=card.details,
        )
        result = await self._call_processor(request)
        if result.outcome is ChargeOutcome.APPROVED:
            crash_point(gateway.settings.fault_point, "after_processor_approved")
        outcome = charge_outcome(result, schedule=gateway.settings.reconcile_schedule_s)
        rendered = _Rendered()
        answer = None if claim is None else AnswerSpec(claim, rendered)
        row, answered = await gateway.payments.settle_attempt(attempt, outcome, before=before, answer=answer)
        gateway.notifier.publish(attempt.intent_id)
        if row is None:  # a reconciler settled it first: report what is stored
            row = await gateway.payments.get_intent(attempt.merchant_id, attempt.intent_id)
            assert row is not None
        return Processed(row, rendered.body if answered else None)

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let in-flight processor calls record their outcome."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self.connector.aclose()
