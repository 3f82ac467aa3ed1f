"""The simulated processor's notifications (SPEC §7, as Adyen and Stripe send them).

In the seeds that have them, every operation the ledger does — approved or declined — is
announced to the gateway: late (tens of milliseconds to a minute after it was done), and
some of them twice, so they arrive in any order with the gateway's own answers, its
reconciler's look-ups and each other:

================  ======================================================================
notice_late       sent 2 to 60 s after the operation (otherwise within 2 s)
notice_duplicate  sent twice (a processor retrying a notification it thinks was lost)
================  ======================================================================

A notice goes through the gateway's own apply path for verified notifications
(:func:`paygate_server.processors.notifications.apply_events`); verifying a processor's
signature is each connector's, tested with the processors' own libraries, not here. A
notice is the processor's: it is sent again to the next gateway process until one has
applied it (a crash meanwhile), as a processor retries until it gets its 2xx.
"""
from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from paygate_server.processing.connectors import ChargeOutcome, ChargeResult, ProcessorEvent

__all__ = ["Notice", "Notices"]

DUPLICATE_RATE = 0.2
LATE_RATE = 0.3
RETRY_S = 5.0  # a notice the gateway failed to apply (it would have answered 5xx) is sent again


@dataclass
class Notice:
    at: float  # the world's time it is sent
    event: ProcessorEvent
    label: str
    done: bool = False


@dataclass
class Notices:
    rng: random.Random
    log: Callable[[str], None]
    pending: list[Notice] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    live_loop: asyncio.AbstractEventLoop | None = None
    deliver: Callable[[ProcessorEvent], Awaitable[int]] | None = None

    def announce(self, kind: str, reference: str, approved: bool, decline_code: str | None,
                 payment_reference: str) -> None:
        """The ledger did an operation: send its notice(s). ``payment_reference``: the
        reference of the payment it belongs to (its own, for a charge or authorization)."""
        loop = self.live_loop
        assert loop is not None  # the ledger acts on the running process's loop
        result = ChargeResult(reference, ChargeOutcome.APPROVED if approved else ChargeOutcome.DECLINED,
                              decline_code=decline_code, message=decline_code,
                              processor_id=f"sim_{reference}")
        event = ProcessorEvent("charge" if kind in ("charge", "authorization") else kind,  # type: ignore[arg-type]
                               result, f"sim_{payment_reference}")
        copies = 1
        if self.rng.random() < DUPLICATE_RATE:
            copies = 2
            self.counts["notice_duplicate"] += 1
        for _ in range(copies):
            late = self.rng.random() < LATE_RATE
            if late:
                self.counts["notice_late"] += 1
            delay = self.rng.uniform(2.0, 60.0) if late else self.rng.uniform(0.01, 2.0)
            notice = Notice(loop.time() + delay, event, f"{kind} {reference} {'approved' if approved else 'declined'}")
            self.pending.append(notice)
            loop.call_at(notice.at, self._send, notice)

    def attach(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[ProcessorEvent], Awaitable[int]]) -> None:
        """A new gateway process: the notices not yet applied are sent to it (from now on
        only to it: a dead process's loop, run once more to free its resources, reaches
        nothing)."""
        self.live_loop, self.deliver = loop, deliver
        for notice in self.pending:
            loop.call_at(max(notice.at, loop.time()), self._send, notice)

    def next_at(self) -> float | None:
        return min((n.at for n in self.pending), default=None)

    def _send(self, notice: Notice) -> None:
        loop = asyncio.get_running_loop()
        if notice.done or loop is not self.live_loop:
            return
        loop.create_task(self._apply(notice), name="processor-notice")

    async def _apply(self, notice: Notice) -> None:
        assert self.deliver is not None
        try:
            settled = await self.deliver(notice.event)
        except Exception as exc:  # noqa: BLE001 - what the gateway's endpoint answers 5xx for
            loop = asyncio.get_running_loop()
            if loop is self.live_loop and not notice.done:
                self.log(f"notice {notice.label} -> {type(exc).__name__}, sent again in {RETRY_S:g} s")
                notice.at = loop.time() + RETRY_S
                loop.call_at(notice.at, self._send, notice)
            return
        if notice.done or asyncio.get_running_loop() is not self.live_loop:
            return  # applied twice at once, or by a process that crashed meanwhile: not done
        notice.done = True
        self.pending.remove(notice)
        self.log(f"notice {notice.label} -> settled {settled}")
