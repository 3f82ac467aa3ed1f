"""The ``process`` operation, in phases (after hyperswitch and rocket-rides-atomic):

1. validate (the endpoint) — nothing stored on a bad request;
2. claim the idempotency key (its own transaction);
3. persist the attempt: intent ``in_progress`` + ``pending`` transaction with its processor
   reference, committed *before* the processor hears of it;
4. call the connector with that reference as the processor's idempotency key — a retry of
   the same attempt reuses it, so the processor can never charge twice;
5. record the outcome in one transaction (or ``unknown`` + a reconciler check);
6. answer within the wait budget; the call goes on in the background if it takes longer,
   and the reconciler covers a crash anywhere.
"""
from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.faults import crash_point
from paygate_server.intents import repository as intent_repo
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.attempts import (
    Answer,
    Attempt,
    NewAttempt,
    apply_charge_result,
    begin_attempt,
    begin_attempt_at_once,
    is_definitive,
    settle_attempt_at_once,
)
from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    Connector,
)

if TYPE_CHECKING:
    from paygate_server.http.api import ApiContext
    from paygate_server.http.idempotency import IdempotencyScope
    from paygate_server.state import Gateway

__all__ = ["ProcessingService", "ResolvedCard"]

# The processor said "nothing charged, try again" (e.g. 503): same reference, short backoff.
RETRY_DELAYS_S = (0.2, 0.5, 1.0)


@dataclass(frozen=True, slots=True, repr=False)
class ResolvedCard:
    """A card ready for the processor: the details (in memory only) and what we keep."""

    details: CardDetails
    summary: dict[str, Any]
    fingerprint: str | None
    # The vault row the card came from: recording the attempt's outcome drops its CVC
    # (processing/attempts.py, in the outcome's own transaction).
    vault_id: str | None = None

    def __repr__(self) -> str:
        return f"ResolvedCard({self.summary!r})"


class ProcessingService:
    def __init__(self, gateway: Gateway, connector: Connector) -> None:
        self._gateway = gateway
        self.connector = connector
        self._tasks: set[asyncio.Task[Any]] = set()

    async def process(self, ctx: ApiContext, intent_id: str, card: ResolvedCard) -> Response:
        gateway = self._gateway
        db = gateway.db
        settings = gateway.settings
        scope = ctx.idempotency
        new = NewAttempt(ctx.merchant_id, intent_id, card.summary, card.fingerprint, card.vault_id,
                         self.connector.name, settings.in_flight_grace_s)
        begun = None
        if not db.is_sqlite:  # one statement; None when off the happy path
            async with db.autocommit() as driver:
                begun = await begin_attempt_at_once(
                    driver, new, key=scope.statement_params() if scope is not None else None)
        if begun is None:
            begun = await ctx.first_phase(lambda conn: begin_attempt(conn, new))
        before, attempt = begun
        gateway.notifier.publish(intent_id)
        crash_point(settings.fault_point, "after_attempt_commit")

        answer = None
        if scope is not None:
            answer = Answer(scope.statement_params(), before,
                            lambda row: jsoncodec.dumps(render_intent(row)), scope.seal)
        task = asyncio.create_task(self._charge(attempt, card, scope, answer),
                                   name=f"charge-{attempt.transaction_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        row: Mapping[str, Any] | None
        stored_with_outcome = False
        try:
            async with asyncio.timeout(settings.process_wait_budget_s):  # not wait_for: see waiting.py
                row, stored_with_outcome = await asyncio.shield(task)
        except (TimeoutError, Exception):
            row = None  # still at the processor, or failed to record: answer with what is stored
        if row is None:
            async with db.read_one() as driver:
                row = await intent_repo.get_intent(driver, ctx.merchant_id, intent_id)
        assert row is not None
        data = jsoncodec.dumps(render_intent(row))
        if scope is not None and row["status"] == "in_progress":
            # Answering before the outcome: store this answer, unless the outcome's
            # transaction stored the final one meanwhile — then answer with that.
            async with db.write() as conn:
                if not await scope.complete_once(conn, 200, data) and (stored := await scope.stored(conn)):
                    return Response(stored[1], stored[0], media_type="application/json")
        elif scope is not None and not stored_with_outcome:
            async with db.write() as conn:  # settled by someone else (a reconciler) first
                await scope.complete_once(conn, 200, data)
        return Response(data, 200, media_type="application/json")

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

    async def _charge(self, attempt: Attempt, card: ResolvedCard, scope: IdempotencyScope | None = None,
                      answer: Answer | None = None) -> tuple[Mapping[str, Any] | None, bool]:
        """Call the processor and record the outcome. Returns the intent row afterwards and
        whether the request's answer (``scope``/``answer``) was stored with the outcome."""
        gateway = self._gateway
        db = gateway.db
        request = ChargeRequest(
            reference=attempt.reference, payment_intent_id=attempt.intent_id,
            merchant_id=attempt.merchant_id, amount=attempt.amount, currency=attempt.currency,
            card=card.details,
        )
        result = await self._call_processor(request)
        if result.outcome is ChargeOutcome.APPROVED:
            crash_point(gateway.settings.fault_point, "after_processor_approved")
        answered = False
        if not db.is_sqlite and is_definitive(result):
            async with db.autocommit() as driver:
                row, answered = await settle_attempt_at_once(driver, attempt, result, answer=answer)
        else:
            async def store_answer(conn: Any, settled: Mapping[str, Any]) -> None:
                # Settled within the request: its answer commits with the outcome.
                nonlocal answered
                if scope is not None and answer is not None:
                    answered = await scope.complete_once(conn, 200, answer.render(settled))

            async with db.write() as conn:
                row = await apply_charge_result(conn, attempt.transaction_id, result,
                                                schedule=gateway.settings.reconcile_schedule_s,
                                                on_settled=store_answer)
        gateway.notifier.publish(attempt.intent_id)
        if row is None:  # a reconciler settled it first: report what is stored
            async with db.read_one() as driver:
                row = await intent_repo.get_intent(driver, attempt.merchant_id, attempt.intent_id)
        return row, answered

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let in-flight processor calls record their outcome."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self.connector.aclose()
