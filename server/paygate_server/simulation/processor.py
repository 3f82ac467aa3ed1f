"""The simulated processor: its own ledger (the truth about money) and the faulty network
in front of it, as a :class:`~paygate_server.processing.connectors.Connector`.

The ledger does each operation once per reference, like a real processor, and otherwise
checks nothing the gateway is supposed to check itself: it records a second charge of one
intent, a capture above the hold or a refund above what was received — and the
simulation's invariants then report it — instead of refusing it and hiding a gateway bug.
It refuses only what a real processor must (capturing a voided authorization, voiding a
captured one).

Between the gateway and the ledger every request can be (seeded, per request):

========== ==============================================================================
delay      the request and the answer each take a random time (up to the read timeout)
retry      answered "nothing done, retry later" (503) without reaching the ledger
refuse     answered "nothing done" (a definitive failure) without reaching the ledger
timeout    no answer within the read timeout; the request may reach the ledger before
           or *after* the gateway gave up (never later than the attempt's deadline)
lost       the ledger acted, the answer was lost (connection reset): unknown
duplicate  the request reaches the ledger twice (a retransmission)
unknown    a look-up answered with something unclassifiable
========== ==============================================================================

A request that reaches the ledger is an event of the simulated world, not of the gateway's
process: it happens at its time even if the gateway crashed meanwhile (the simulation
moves undelivered arrivals to the next process's loop).
"""
from __future__ import annotations

import asyncio
import datetime as _dt
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    ConnectorError,
    RefundRequest,
    RefundResult,
    SettlementRecord,
    SyncKind,
    VoidRequest,
    WebhookRejected,
    WebhookReply,
)
from paygate_server.simulation.notices import Notices

__all__ = ["Arrival", "Ledger", "Operation", "SimulatedConnector"]

DECLINE_CODES = ("generic_decline", "insufficient_funds", "expired_card")


@dataclass
class Operation:
    """One operation the processor did (approved) or refused (declined), by reference."""

    kind: str  # charge | authorization | capture | void | refund
    reference: str
    intent_id: str
    amount: int
    approved: bool
    decline_code: str | None = None
    charge_reference: str | None = None  # a capture's, void's or refund's payment


@dataclass
class Arrival:
    """A request on its way to the ledger: it is done at ``at`` (the world's time)."""

    at: float
    act: Callable[[], ChargeResult]
    answer: asyncio.Future[ChargeResult] | None  # the connector waiting for it (None: nobody)
    answer_delay: float
    done: bool = False


@dataclass
class Ledger:
    """The processor's truth, and the requests still travelling to it."""

    rng: random.Random
    decline_rate: float
    log: Callable[[str], None]
    ops: dict[str, Operation] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    live_loop: asyncio.AbstractEventLoop | None = None  # the gateway process now running
    notices: Notices | None = None  # the seed's notifications, if it has them

    # --- what the processor does, once per reference ---------------------------------

    def charge(self, request: ChargeRequest) -> ChargeResult:
        done = self.ops.get(request.reference)
        if done is None:
            approved = self.rng.random() >= self.decline_rate
            done = Operation("charge" if request.capture else "authorization", request.reference,
                             request.payment_intent_id, request.amount, approved,
                             None if approved else self.rng.choice(DECLINE_CODES))
            self._record(done)
        return self._result(done)

    def capture(self, request: CaptureRequest) -> ChargeResult:
        done = self.ops.get(request.reference)
        if done is None:
            auth = self.ops.get(request.charge_reference)
            refusal = self._hold_refusal(auth)
            done = Operation("capture", request.reference, auth.intent_id if auth else "?", request.amount,
                             refusal is None, refusal, request.charge_reference)
            self._record(done)
        return self._result(done)

    def void(self, request: VoidRequest) -> ChargeResult:
        done = self.ops.get(request.reference)
        if done is None:
            auth = self.ops.get(request.charge_reference)
            refusal = self._hold_refusal(auth)
            done = Operation("void", request.reference, auth.intent_id if auth else "?", 0,
                             refusal is None, refusal, request.charge_reference)
            self._record(done)
        return self._result(done)

    def refund(self, request: RefundRequest) -> ChargeResult:
        done = self.ops.get(request.reference)
        if done is None:
            paid = self.ops.get(request.charge_reference)
            refusal = None if paid is not None and paid.approved else "charge_not_found"
            done = Operation("refund", request.reference, paid.intent_id if paid else "?", request.amount,
                             refusal is None, refusal, request.charge_reference)
            self._record(done)
        return self._result(done)

    def lookup(self, reference: str, kind: SyncKind) -> ChargeResult:
        done = self.ops.get(reference)
        kinds = ("charge", "authorization") if kind == "charge" else (kind,)
        if done is None or done.kind not in kinds:
            return ChargeResult(reference, ChargeOutcome.NOT_FOUND)
        return self._result(done)

    def _hold_refusal(self, auth: Operation | None) -> str | None:
        if auth is None or auth.kind != "authorization" or not auth.approved:
            return "authorization_not_found"
        for op in self.ops.values():
            if op.charge_reference == auth.reference and op.approved:
                if op.kind == "capture":
                    return "already_captured"
                if op.kind == "void":
                    return "authorization_voided"
        return None

    def _result(self, op: Operation) -> ChargeResult:
        if op.approved:
            return ChargeResult(op.reference, ChargeOutcome.APPROVED, auth_code="A" + op.reference[-5:],
                                processor_id=f"sim_{op.reference}")
        return ChargeResult(op.reference, ChargeOutcome.DECLINED, decline_code=op.decline_code,
                            message=op.decline_code, processor_id=f"sim_{op.reference}")

    def _record(self, op: Operation) -> None:
        self.ops[op.reference] = op
        self.log(f"processor {op.kind} {op.reference} {op.intent_id} {op.amount} "
                 f"{'approved' if op.approved else 'declined ' + str(op.decline_code)}")
        self.check(op.intent_id)
        if self.notices is not None:
            self.notices.announce(op.kind, op.reference, op.approved, op.decline_code,
                                  op.charge_reference or op.reference)

    # --- the processor-side invariants, after every operation -----------------------

    def of_intent(self, intent_id: str) -> list[Operation]:
        return [op for op in self.ops.values() if op.intent_id == intent_id]

    def check(self, intent_id: str) -> None:
        ops = [op for op in self.of_intent(intent_id) if op.approved]
        paid = [op for op in ops if op.kind in ("charge", "authorization")]
        if len(paid) > 1:
            self._violation(f"{intent_id}: {len(paid)} successful charges/authorizations at the processor")
        captures = [op for op in ops if op.kind == "capture"]
        if len(captures) > 1:
            self._violation(f"{intent_id}: {len(captures)} captures at the processor")
        for capture in captures:
            auth = self.ops.get(capture.charge_reference or "")
            if auth is not None and capture.amount > auth.amount:
                self._violation(f"{intent_id}: captured {capture.amount} > authorized {auth.amount}")
        received = sum(op.amount for op in ops if op.kind in ("charge", "capture"))
        refunded = sum(op.amount for op in ops if op.kind == "refund")
        if refunded > received:
            self._violation(f"{intent_id}: refunded {refunded} > received {received} at the processor")

    def _violation(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)
            self.log(f"VIOLATION {text}")

    # --- requests in flight ------------------------------------------------------

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver the undelivered arrivals on ``loop`` (a new process's, after a crash):
        whoever waited for their answers is gone. From now on only that loop delivers: a
        dead process's loop, run once more to free its resources, reaches nothing."""
        self.live_loop = loop
        for arrival in self.arrivals:
            if not arrival.done:
                arrival.answer = None
                loop.call_at(max(arrival.at, loop.time()), self._arrive, arrival)

    def send(self, loop: asyncio.AbstractEventLoop, delay: float, act: Callable[[], ChargeResult],
             answer: asyncio.Future[ChargeResult] | None, answer_delay: float) -> None:
        arrival = Arrival(loop.time() + delay, act, answer, answer_delay)
        self.arrivals.append(arrival)
        loop.call_at(arrival.at, self._arrive, arrival)

    def _arrive(self, arrival: Arrival) -> None:
        if arrival.done or asyncio.get_running_loop() is not self.live_loop:
            return
        arrival.done = True
        self.arrivals.remove(arrival)
        result = arrival.act()
        answer = arrival.answer
        if answer is not None and not answer.done():
            answer.get_loop().call_later(arrival.answer_delay, _answer, answer, result)


def _answer(future: asyncio.Future[ChargeResult], result: ChargeResult) -> None:
    if not future.done():
        future.set_result(result)


@dataclass
class Faults:
    """Which fault a request meets (seeded); ``enabled`` off once the world calms down."""

    rng: random.Random
    rate: float  # probability that a request meets a fault other than plain delay
    read_timeout_s: float
    attempt_deadline_s: float
    enabled: bool = True
    counts: Counter[str] = field(default_factory=Counter)

    def pick(self, kinds: tuple[str, ...]) -> str | None:
        if not self.enabled:
            return None
        if self.rng.random() < self.rate:
            kind = self.rng.choice(kinds)
            self.counts[kind] += 1
            return kind
        return None

    def latency(self) -> float:
        """One way's time: mostly short, sometimes seconds (the 'delay' fault)."""
        if not self.enabled:
            return 0.01
        if self.rng.random() < self.rate:
            self.counts["delay"] += 1
            return self.rng.uniform(0.5, self.read_timeout_s / 2)
        return self.rng.uniform(0.005, 0.2)


_CALL_FAULTS = ("retry", "refuse", "timeout", "lost", "duplicate")
_LOOKUP_FAULTS = ("timeout", "unknown")


class SimulatedConnector:
    """The gateway's side of the simulated processor: one per gateway process. A process
    that crashed is ``dead``: a task of it that still runs (while the simulation cleans up)
    reaches nothing."""

    name = "sim"
    resend_answers_s = 0.0  # looked up

    def __init__(self, ledger: Ledger, faults: Faults, log: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.faults = faults
        self.log = log
        self.dead = False

    async def _request(self, what: str, act: Callable[[], ChargeResult], faults: tuple[str, ...]) -> ChargeResult:
        result = await self._exchange(what, act, faults)
        self.log(f"answer {what} -> {result.outcome.value}")
        return result

    async def _exchange(self, what: str, act: Callable[[], ChargeResult], faults: tuple[str, ...]) -> ChargeResult:
        if self.dead:
            raise asyncio.CancelledError  # the process is gone
        loop = asyncio.get_running_loop()
        fault = self.faults.pick(faults)
        going, coming = self.faults.latency(), self.faults.latency()
        if fault is not None:
            self.log(f"fault {fault} {what}")
        if fault == "retry":
            await asyncio.sleep(going + coming)
            return ChargeResult("", ChargeOutcome.RETRY, message="503 retry later")
        if fault == "refuse":
            await asyncio.sleep(going + coming)
            return ChargeResult("", ChargeOutcome.FAILED, message="500 nothing done")
        if fault == "unknown":
            await asyncio.sleep(going + coming)
            return ChargeResult("", ChargeOutcome.UNKNOWN, message="unreadable answer")
        answer: asyncio.Future[ChargeResult] = loop.create_future()
        if fault == "timeout":
            # It arrives before or, as often, after the gateway stopped waiting — never after
            # the attempt's deadline (what the in-flight grace relies on).
            rng, read, deadline = self.faults.rng, self.faults.read_timeout_s, self.faults.attempt_deadline_s
            self.ledger.send(loop, rng.uniform(0.0, read) if rng.random() < 0.5 else rng.uniform(read, deadline),
                             act, None, 0.0)
        else:
            self.ledger.send(loop, going, act, None if fault == "lost" else answer, coming)
            if fault == "duplicate":
                self.ledger.send(loop, going + self.faults.rng.uniform(0.0, 1.0), act, None, 0.0)
        try:
            async with asyncio.timeout(self.faults.read_timeout_s):
                return await answer
        except TimeoutError:
            return ChargeResult("", ChargeOutcome.UNKNOWN, message="read timeout")

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return await self._request(f"charge {request.reference}", lambda: self.ledger.charge(request), _CALL_FAULTS)

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        return await self._request(f"capture {request.reference}", lambda: self.ledger.capture(request),
                                   _CALL_FAULTS)

    async def void(self, request: VoidRequest) -> ChargeResult:
        return await self._request(f"void {request.reference}", lambda: self.ledger.void(request), _CALL_FAULTS)

    async def refund(self, request: RefundRequest) -> RefundResult:
        result = await self._request(f"refund {request.reference}", lambda: self.ledger.refund(request),
                                     _CALL_FAULTS)
        return RefundResult(request.reference, result.outcome, result.message)

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        return await self._request(f"lookup {kind} {reference}", lambda: self.ledger.lookup(reference, kind),
                                   _LOOKUP_FAULTS)

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        raise ConnectorError("the simulated processor has no settlement reports")

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> ChargeResult | None:
        return None  # it answers look-ups

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        raise WebhookRejected("the simulated processor sends no notifications")

    async def aclose(self) -> None:
        return None
