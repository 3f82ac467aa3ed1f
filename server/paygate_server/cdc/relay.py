"""The relay: ships ``change_log`` to each consumer in order, at least once.

Every consumer (the archive, the broker, webhook event creation, …) is pumped by its own
task with its own durable offset (``cdc_offsets``) and its own lease, so a slow or broken
sink never holds the others back, and a consumer runs in exactly one process at a time.

For each consumer: read the next changes after its position (commit-safe, see
:mod:`paygate_server.cdc.reader`), deliver them, then record the new position. A crash
between the two re-delivers that batch (at least once; every record carries its change id
for deduplication). A consumer that lives in the same database delivers *inside* the
offset's transaction, which makes it exactly once; a sink that keeps its own durable
position (the archive's manifest, the broker's last message) reports it on start, and the
relay resumes from the later of the two, so a crash costs no duplicate there either.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.cdc.changes import START, Change, Position
from paygate_server.cdc.lease import ConsumerLease
from paygate_server.cdc.reader import reader_for
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.db import Database
from paygate_server.db.dialect import insert_ignore
from paygate_server.db.schema_history import cdc_offsets
from paygate_server.faults import crash_point

__all__ = ["Consumer", "Relay", "ConsumerStats", "load_offset", "FAULT_POINTS"]

log = logging.getLogger("paygate.cdc")

# Crash points for the relay's crash tests (PAYGATE_FAULT_POINT, see faults.py).
FAULT_POINTS = ("relay_after_deliver", "archive_after_segment", "broker_mid_batch")


class Consumer(Protocol):
    """Something the relay delivers changes to."""

    name: str
    batch_size: int
    # How long a partial batch may wait for more changes (archive segments); 0: at once.
    linger_s: float
    # True: deliver() runs inside the offset's transaction, on ``conn`` (same database).
    transactional: bool

    async def start(self) -> Position | None:
        """Open resources; return the sink's own durable position if it keeps one."""
        ...

    async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None: ...

    async def close(self) -> None: ...


@dataclass
class ConsumerStats:
    delivered: int = 0
    batches: int = 0
    running: bool = False
    last_error: str | None = None
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)


async def load_offset(conn: AsyncConnection, consumer: str) -> Position:
    row = (await conn.execute(select(cdc_offsets).where(cdc_offsets.c.consumer == consumer))).first()
    if row is None:
        return START
    return Position(row.horizon, row.window_end, row.last_id)


async def _ensure_offset(lease: ConsumerLease) -> Position:
    async with lease.write() as conn:
        await insert_ignore(conn, cdc_offsets, {"consumer": lease.consumer, "horizon": 0, "window_end": None,
                                                "last_id": 0, "delivered": 0, "updated_at": now_us()})
        return await load_offset(conn, lease.consumer)


async def _save_offset(conn: AsyncConnection, consumer: str, pos: Position, delivered: int) -> None:
    await conn.execute(update(cdc_offsets).where(cdc_offsets.c.consumer == consumer).values(
        horizon=pos.horizon, window_end=pos.window_end, last_id=pos.last_id,
        delivered=cdc_offsets.c.delivered + delivered, updated_at=now_us()))


class Relay:
    def __init__(self, db: Database, settings: Settings, consumers: list[Consumer] | None = None) -> None:
        self._db = db
        self._settings = settings
        self.consumers: list[Consumer] = list(consumers or [])
        self.stats: dict[str, ConsumerStats] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._reader = reader_for(db.dialect)

    def add(self, consumer: Consumer) -> None:
        self.consumers.append(consumer)

    def wake(self, _intent_id: str | None = None) -> None:
        """A change was committed somewhere: look now rather than at the next poll."""
        for event in self._wakes.values():
            event.set()

    def _stats(self, name: str) -> ConsumerStats:
        return self.stats.setdefault(name, ConsumerStats())

    async def run_forever(self) -> None:
        await asyncio.gather(*(self._run_consumer(c) for c in self.consumers))

    async def drain(self, *, lease_timeout_s: float = 30.0, timeout_s: float = 60.0) -> dict[str, int]:
        """Deliver everything committed so far to every consumer, then return (``--once``).

        On PostgreSQL "so far" means every transaction that had begun when the drain
        started: the drain waits (up to ``timeout_s``) for those still running to end.
        """
        counts = {}
        target = None
        if not self._db.is_sqlite:
            async with self._db.read() as conn:
                target = (await conn.execute(text(
                    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))).scalar_one()
        deadline = time.monotonic() + timeout_s
        for consumer in self.consumers:
            lease = ConsumerLease(self._db, consumer.name)
            deadline = time.monotonic() + lease_timeout_s
            while not await lease.acquire():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"consumer {consumer.name} is held by another relay")
                await asyncio.sleep(0.2)  # polling a lease another process holds
            try:
                counts[consumer.name] = await self._pump(consumer, lease, until=(target, deadline))
            finally:
                await lease.release()
                await consumer.close()
        return counts

    async def _run_consumer(self, consumer: Consumer) -> None:
        stats = self._stats(consumer.name)
        self._wakes.setdefault(consumer.name, asyncio.Event())
        while True:
            lease = ConsumerLease(self._db, consumer.name)
            try:
                if not await lease.acquire():
                    # Standing by: another process delivers. Not woken by changes (that
                    # would try the lease at the rate of changes), just asked again later.
                    await asyncio.sleep(self._settings.relay_lease_retry_s)
                    continue
                stats.running = True
                await self._pump(consumer, lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stats.last_error = repr(exc)[:300]
                log.exception("relay consumer %s failed; retrying", consumer.name)
                await asyncio.sleep(1.0)
            finally:
                stats.running = False
                with contextlib.suppress(Exception):
                    await lease.release()
                with contextlib.suppress(Exception):
                    await consumer.close()

    async def _pump(self, consumer: Consumer, lease: ConsumerLease,
                    until: tuple[int | None, float] | None = None) -> int:
        """Deliver until cancelled, or with ``until=(target, deadline)`` until caught up with
        every transaction older than ``target`` (PostgreSQL; None on SQLite)."""
        until_idle = until is not None
        stats = self._stats(consumer.name)
        wake = self._wakes.setdefault(consumer.name, asyncio.Event())
        committed = await _ensure_offset(lease)
        own = await consumer.start()
        if own is not None and own.key() > committed.key():
            async with lease.write() as conn:
                await _save_offset(conn, consumer.name, own, 0)
            committed = own
        read_pos = committed
        pending: list[Change] = []
        pending_since = 0.0
        total = 0
        while True:
            wake.clear()
            async with lease.read() as conn:
                changes, read_pos = await self._reader.next_batch(
                    conn, read_pos, consumer.batch_size - len(pending))
            if changes:
                if not pending:
                    pending_since = time.monotonic()
                pending.extend(changes)
            # An empty window only moves the horizon: not worth an offset write (that write
            # would itself take a txid and open the next empty window), nor a re-read now.
            progressed = bool(changes)
            lingered = time.monotonic() - pending_since >= consumer.linger_s
            if pending and (len(pending) >= consumer.batch_size or lingered or (until_idle and not progressed)):
                await self._deliver(consumer, lease, pending, read_pos)
                total += len(pending)
                stats.delivered += len(pending)
                stats.batches += 1
                pending = []
                committed = read_pos
            if progressed:
                continue
            if not pending:
                stats.caught_up.set()
                if until is not None:
                    target, deadline = until
                    if target is None or read_pos.horizon >= target or time.monotonic() >= deadline:
                        return total
            timeout = self._settings.relay_poll_interval_s
            if pending:
                timeout = min(timeout, max(0.0, consumer.linger_s - (time.monotonic() - pending_since)))
            await _wait(wake, timeout)

    async def _deliver(self, consumer: Consumer, lease: ConsumerLease, changes: list[Change], pos: Position) -> None:
        fault = self._settings.fault_point
        if consumer.transactional:
            async with lease.write() as conn:
                await consumer.deliver(changes, conn)
                crash_point(fault, "relay_after_deliver")
                await _save_offset(conn, consumer.name, pos, len(changes))
            after_commit = getattr(consumer, "after_commit", None)
            if after_commit is not None:
                after_commit()
            return
        await consumer.deliver(changes, None)
        crash_point(fault, "relay_after_deliver")
        async with lease.write() as conn:
            await _save_offset(conn, consumer.name, pos, len(changes))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
