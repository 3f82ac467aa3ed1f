"""A connector whose answers the test decides, and which records every call."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paygate
from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    SettlementRecord,
    VoidRequest,
)
from paygate_server.processing.service import ProcessingService
from paygate_server.refunds.service import RefundService

if TYPE_CHECKING:
    from tests.support.app import InProcessGateway

__all__ = ["ScriptedProcessor", "process_body", "scripted"]


@dataclass
class ScriptedProcessor:
    """A connector whose answers the test decides; records every call."""

    charge_outcome: ChargeOutcome = ChargeOutcome.UNKNOWN
    lookup_outcome: ChargeOutcome = ChargeOutcome.APPROVED
    lookup_delay_s: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    settled: list[SettlementRecord] = field(default_factory=list)
    name: str = "scripted"
    # > 0: an Adyen-like processor that cannot be asked; the reconciler sends again instead.
    resend_answers_s: float = 0.0
    # Captures and voids: what sending one answers, and what looking one up answers.
    follow_up_outcome: ChargeOutcome = ChargeOutcome.APPROVED
    follow_up_lookup: ChargeOutcome = ChargeOutcome.NOT_FOUND
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    # Refunds: what looking one up answers (not found: the reconciler sends it again).
    refund_lookup: ChargeOutcome = ChargeOutcome.NOT_FOUND
    refund_answer: ChargeOutcome = ChargeOutcome.APPROVED  # what sending a refund answers
    refund_message: str | None = None  # and the words it says with it
    # Runs while a capture's or void's look-up is on its way back (a slow answer).
    on_follow_up_lookup: Callable[[], None] | None = None
    # Operations ("charge", "capture", "void", "refund", "lookup") the processor takes and never answers.
    hang: set[str] = field(default_factory=set)
    # The references charges were looked up by, in order (the database is shared by the
    # test session, so a reconciler's pass may look up other tests' due checks too).
    looked_up: list[str] = field(default_factory=list)

    async def _maybe_hang(self, operation: str) -> None:
        if operation in self.hang:
            await asyncio.Event().wait()

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        self.calls["charge"] += 1
        await self._maybe_hang("charge")
        return ChargeResult(request.reference, self.charge_outcome, auth_code="A1B2C3", message="scripted")

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        self.calls["capture"] += 1
        self.sent.append(("capture", request.reference, request.charge_reference))
        await self._maybe_hang("capture")
        return ChargeResult(request.reference, self.follow_up_outcome)

    async def void(self, request: VoidRequest) -> ChargeResult:
        self.calls["void"] += 1
        self.sent.append(("void", request.reference, request.charge_reference))
        await self._maybe_hang("void")
        return ChargeResult(request.reference, self.follow_up_outcome)

    async def lookup(self, reference: str, kind: str = "charge", *, processor_id: str | None = None) -> ChargeResult:
        self.calls["lookup" if kind == "charge" else f"lookup_{kind}"] += 1
        if kind == "charge":
            self.looked_up.append(reference)
        await self._maybe_hang("lookup")
        if kind == "refund":
            return ChargeResult(reference, self.refund_lookup)
        if kind != "charge":
            if self.on_follow_up_lookup is not None:
                self.on_follow_up_lookup()
            return ChargeResult(reference, self.follow_up_lookup)
        await asyncio.sleep(self.lookup_delay_s)  # a slow processor: lets two reconcilers overlap
        return ChargeResult(reference, self.lookup_outcome, auth_code="A1B2C3", message="scripted lookup")

    async def refund(self, request: RefundRequest) -> RefundResult:
        self.calls["refund"] += 1
        self.sent.append(("refund", request.reference, request.charge_reference))
        await self._maybe_hang("refund")
        return RefundResult(request.reference, self.refund_answer, self.refund_message)

    async def settlement_report(self, day: dt.date) -> list[SettlementRecord]:
        return list(self.settled) if day == dt.datetime.now(dt.UTC).date() else []

    async def aclose(self) -> None:
        pass


def scripted(gw: InProcessGateway, processor: ScriptedProcessor | None = None) -> ScriptedProcessor:
    """``gw``'s payments and refunds go to a scripted processor (approving, unless given one)."""
    processor = processor or ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    gw.gateway.refunds = RefundService(gw.gateway, processor)  # type: ignore[arg-type]
    return processor


def process_body(gw: InProcessGateway, pid: str) -> dict[str, Any]:
    """A ``process`` body paying ``pid`` with a card encrypted to ``gw``'s key."""
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                               exp_month=12, exp_year=2034, cvc="123")
    return {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}}
