"""Webhook retention (docs/operations.md "Webhooks"): the gateway's background pass and
``paygate webhooks prune``.

``PAYGATE_WEBHOOK_RETENTION_S`` (30 days, as Stripe keeps events to resend) is the one
window: a finished delivery is kept that long after its last update, an event that long
after its creation while a delivery or a later event of its object says nothing else, and
an endpoint disabled by a ``410`` gets its events (failed at once, for a replay) for that
long after it was disabled — so ``paygate webhooks replay`` reaches every event of the last
window. A pass deletes in batches (storage/webhook_prune.py) until nothing is left that old;
every process running background work runs it, every ``PAYGATE_WEBHOOK_PRUNE_INTERVAL_S``
(0: never, then run the command).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.availability import log_failure
from paygate_server.storage.webhook_prune import prune_batch

__all__ = ["Pruned", "prune", "prune_forever", "retention_start"]

log = logging.getLogger("paygate.webhooks")
_US = 1_000_000


@dataclass(frozen=True, slots=True)
class Pruned:
    deliveries: int
    events: int
    batches: int


def retention_start(settings: Settings, now: int) -> int:
    """The oldest time still kept at ``now`` (microseconds): rows older may go."""
    return now - settings.webhook_retention_s * _US


async def prune(db: Database, settings: Settings, now: int | None = None) -> Pruned:
    """Delete what is older than the retention at ``now`` (default: the clock at the start), one
    batch of ``PAYGATE_WEBHOOK_PRUNE_BATCH_ROWS`` per transaction, until a batch finds no more."""
    now = now_us() if now is None else now
    before = retention_start(settings, now)
    deliveries = events = batches = 0
    while True:
        done = await prune_batch(db, before, batch=settings.webhook_prune_batch_rows, now=now)
        deliveries, events, batches = deliveries + done.deliveries, events + done.events, batches + 1
        if not done.more:
            return Pruned(deliveries, events, batches)
        await asyncio.sleep(0)  # the process's other work between two transactions


async def prune_forever(db: Database, settings: Settings) -> None:
    """Background work: a pass every ``webhook_prune_interval_s``, a failure logged."""
    interval = settings.webhook_prune_interval_s
    if not interval:
        return
    while True:
        try:
            done = await prune(db, settings)
            if done.deliveries or done.events:
                log.info("webhook retention: %d deliveries and %d events deleted (%d batches)",
                         done.deliveries, done.events, done.batches)
        except Exception:
            log_failure(log, "webhook retention pass failed")
        await asyncio.sleep(interval)
