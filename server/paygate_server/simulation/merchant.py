"""The simulated merchant: the webhook endpoint the gateway's real dispatcher sends events
to, behind a faulty network of its own (seeded, per attempt).

Each attempt takes a one-way time there and one back (:meth:`Faults.latency`), and may meet
(its own :class:`~.processor.Faults`, switched off with the processor's when the world
calms down):

============  ==========================================================================
hook_refused  the merchant's server answers 500: not received, retried later
hook_timeout  no answer within the dispatcher's timeout: not received, retried later
hook_lost     received, and the answer lost on its way back: retried, so the merchant
              sees the event again with the same ``webhook-id`` (at least once)
============  ==========================================================================

A gateway process that crashes while its attempt is on the way back leaves the event
received and the delivery unfinished: the next process sends it again, as it would.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.simulation.processor import Faults
from paygate_server.storage import Database
from paygate_server.webhooks.dispatcher import AttemptResult, Dispatcher

__all__ = ["HOOK_FAULTS", "Merchant", "SimulatedDispatcher"]

HOOK_FAULTS = ("hook_refused", "hook_timeout", "hook_lost")


@dataclass
class Merchant:
    faults: Faults
    timeout_s: float  # the dispatcher's: a silent endpoint costs it this long
    log: Callable[[str], None]
    received: dict[str, list[bytes]] = field(default_factory=dict)  # event id → every body received
    live_loop: asyncio.AbstractEventLoop | None = None  # the gateway process now running

    async def receive(self, event_id: str, body: bytes) -> AttemptResult:
        if asyncio.get_running_loop() is not self.live_loop:
            raise asyncio.CancelledError  # a crashed process's attempt, while it is cleaned up: it reaches nothing
        fault = self.faults.pick(HOOK_FAULTS)
        if fault == "hook_timeout":
            await asyncio.sleep(self.timeout_s)
            self.log(f"hook {event_id} timed out")
            return AttemptResult(None, f"no answer within {self.timeout_s:g} s")
        await asyncio.sleep(self.faults.latency())
        if fault == "hook_refused":
            self.log(f"hook {event_id} refused")
            return AttemptResult(500, None)
        self.received.setdefault(event_id, []).append(body)
        self.log(f"hook {event_id} received")
        await asyncio.sleep(self.faults.latency())
        if fault == "hook_lost":
            return AttemptResult(None, "ConnectionResetError: the answer was lost")
        return AttemptResult(200, None)


class SimulatedDispatcher(Dispatcher):
    """The real dispatcher (claims, leases, retries, what it records) with the merchant as
    its network: only :meth:`attempt`, the one POST, is the world's."""

    def __init__(self, db: Database, master: MasterKey, settings: Settings, merchant: Merchant) -> None:
        super().__init__(db, master, settings)
        self.merchant = merchant

    async def attempt(self, url: str, secret: str, event_id: str, body: bytes) -> AttemptResult:
        return await self.merchant.receive(event_id, body)
