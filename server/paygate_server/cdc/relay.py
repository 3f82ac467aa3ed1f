"""The relay: ships ``change_log`` to each consumer in order, at least once.

Every consumer (the archive, the broker, webhook event creation, …) is pumped by its own
task with its own durable offset (``cdc_offsets``) and its own lease, so a slow or broken
sink never holds the others back, and a consumer runs in exactly one process at a time.

For each consumer: read the next changes after its position (commit-safe, see
:mod:`paygate_server.storage.change_log`), deliver them, then record the new position. A crash
between the two re-delivers that batch (at least once; every record carries its change id
for deduplication). A consumer that lives in the same database delivers *inside* the
offset's transaction, which makes it exactly once; a sink that keeps its own durable
position (the archive's manifest) reports it on start, and the
relay resumes from the later of the two, so a crash costs no duplicate there either.

Every commit wakes the relay, but the work is per batch, not per wake-up: wake-ups that
arrive while a consumer reads or delivers coalesce, and under load a consumer reads at most
every ``read_interval_s`` (an idle one reads at once), see :meth:`Relay._pump`.
"""
from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from paygate_server.config import Settings
from paygate_server.faults import crash_point
from paygate_server.storage import Database, Transaction
from paygate_server.storage.availability import log_failure
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.relay_leases import ConsumerLease
from paygate_server.waiting import wait_event

__all__ = ["Consumer", "ConsumerRefused", "Relay", "ConsumerStats"]

log = logging.getLogger("paygate.cdc")


def _now() -> float:
    """The running loop's clock: monotonic, and a simulation's virtual time (every wait of the
    relay is a loop timer, so its deadlines must read the same clock)."""
    return asyncio.get_running_loop().time()


class ConsumerRefused(Exception):
    """A consumer must not deliver until an operator acts (its message, one line, says what
    to run): the relay logs it once, delivers nothing to that consumer, and asks again at
    every lease retry — the others go on."""


class Consumer(abc.ABC):
    """Something the relay delivers changes to. Every consumer subclasses this, so the relay
    calls each hook directly: what a consumer does not override is declared here."""

    name: str
    batch_size: int
    # How long a partial batch may wait for more changes (archive segments); 0: at once.
    linger_s: float
    # True: deliver() runs inside the offset's transaction, given as ``conn`` (same database).
    transactional: bool

    @abc.abstractmethod
    async def start(self) -> Position | None:
        """Open resources; return the sink's own durable position if it keeps one."""

    @abc.abstractmethod
    async def deliver(self, changes: list[Change], conn: Transaction | None) -> None:
        """Deliver one batch; ``conn``: the offset's transaction (transactional consumers only)."""

    def after_commit(self) -> None:
        """The batch just delivered is recorded: its offset committed (for a transactional
        consumer, with what ``deliver`` wrote). Memory that must only learn what is durable
        (the webhook consumer's last statuses) is updated here. Default: nothing."""
        return None

    async def close(self) -> None:
        """Release what ``start`` opened. Default: nothing."""
        return None


@dataclass
class ConsumerStats:
    delivered: int = 0
    batches: int = 0
    reads: int = 0
    last_error: str | None = None
    refused: int = 0  # starts refused (ConsumerRefused): the consumer waits for an operator
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)


# Under load, a consumer reads at most this often (from the start of one productive read to
# the next), so one read and one delivery serve every change committed in between rather
# than one each per commit. It bounds the latency this adds (an idle relay reads at once).
READ_INTERVAL_S = 0.01


class Relay:
    def __init__(self, db: Database, settings: Settings, consumers: list[Consumer] | None = None, *,
                 read_interval_s: float = READ_INTERVAL_S) -> None:
        self._db = db
        self._settings = settings
        self.read_interval_s = read_interval_s
        self.consumers: list[Consumer] = list(consumers or [])
        self.stats: dict[str, ConsumerStats] = {}
        self._wakes: dict[str, asyncio.Event] = {}

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
        started: the drain waits (up to ``timeout_s``, for the whole drain) for those still
        running to end. ``lease_timeout_s`` bounds only the wait for each consumer's lease.
        """
        counts = {}
        target = await ChangeLog(self._db).drain_target()
        # One deadline for the whole drain (waiting for running transactions); the lease
        # wait has its own, per consumer, and must not replace it.
        deadline = _now() + timeout_s
        for consumer in self.consumers:
            lease = ConsumerLease(self._db, consumer.name)
            lease_deadline = _now() + lease_timeout_s
            while not await lease.acquire():
                if _now() > lease_deadline:
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
        while True:
            lease = ConsumerLease(self._db, consumer.name)
            try:
                if not await lease.acquire():
                    # Standing by: another process delivers. Not woken by changes (that
                    # would try the lease at the rate of changes), just asked again later.
                    await asyncio.sleep(self._settings.relay_lease_retry_s)
                    continue
                await self._pump(consumer, lease)
            except ConsumerRefused as exc:
                if stats.last_error != str(exc):  # once, not at every retry
                    log.error("relay consumer %s stopped: %s", consumer.name, exc)
                stats.last_error = str(exc)
                stats.refused += 1
                await asyncio.sleep(max(1.0, self._settings.relay_lease_retry_s))
            except Exception as exc:
                stats.last_error = repr(exc)[:300]
                log_failure(log, "relay consumer %s failed; retrying", consumer.name)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await lease.release()
                with contextlib.suppress(Exception):
                    await consumer.close()

    async def _pump(self, consumer: Consumer, lease: ConsumerLease,
                    until: tuple[int | None, float] | None = None) -> int:
        """Deliver until cancelled, or with ``until=(target, deadline)`` until caught up with
        every transaction older than ``target`` (PostgreSQL; None on SQLite).

        When to read (live mode; a drain reads on until caught up):

        * a read that filled its page reads on at once (more is waiting);
        * otherwise the next read waits for a wake-up (or the poll interval) — and wake-ups
          coalesce: every commit while a batch is read or delivered just leaves "more to
          read" set, and the next read comes no sooner than ``read_interval_s`` after the
          previous *productive* one began, so under load one read picks up every change
          committed meanwhile. A wake-up after an empty read (an idle relay) or after a
          quiet interval reads at once;
        * a read that saw committed changes it could not take yet (PostgreSQL: held back by
          a running transaction, which may end without a wake-up) looks again after
          ``read_interval_s``, backing off to the poll interval;
        * a consumer that lingers (the archive) does not read at every wake-up while its
          partial batch waits: it reads when the linger is over.
        """
        stats = self._stats(consumer.name)
        wake = self._wakes.setdefault(consumer.name, asyncio.Event())
        committed = await lease.start_offset()
        own = await consumer.start()
        if own is not None and own.key() > committed.key():
            await lease.save_offset(own, 0)
            committed = own
        read_pos = committed
        pending: list[Change] = []
        pending_since = 0.0
        total = 0
        poll = self._settings.relay_poll_interval_s
        interval = self.read_interval_s
        retry = interval
        while True:
            wake.clear()
            started = _now()
            limit = consumer.batch_size - len(pending)
            batch = await lease.read_changes(read_pos, limit)
            stats.reads += 1
            changes, read_pos = batch.changes, batch.position
            if changes:
                if not pending:
                    pending_since = started
                pending.extend(changes)
            # An empty window only moves the horizon: not worth an offset write (that write
            # would itself take a txid and open the next empty window).
            progressed = bool(changes)
            full = len(changes) >= limit
            lingered = _now() - pending_since >= consumer.linger_s
            if pending and (len(pending) >= consumer.batch_size or lingered or (until is not None and not progressed)):
                await self._deliver_batch(consumer, lease, pending, read_pos)
                total += len(pending)
                stats.delivered += len(pending)
                stats.batches += 1
                pending = []
                committed = read_pos
            if until is not None:
                if progressed:
                    continue
                target, deadline = until
                if not pending:
                    stats.caught_up.set()
                    if target is None or read_pos.horizon >= target or _now() >= deadline:
                        return total
                # No wait outlasts the drain's own deadline.
                await wait_event(wake, min(poll, max(0.0, deadline - _now())))
                continue
            if full:
                continue  # more is waiting: read on at once
            if pending:
                # Lingering for a fuller batch: no reads until the linger is over.
                await asyncio.sleep(max(0.0, consumer.linger_s - (_now() - pending_since)))
                continue
            stats.caught_up.set()
            if batch.waiting:
                if progressed:
                    retry = interval
                timeout, retry = retry, min(poll, retry * 2)
            else:
                timeout, retry = poll, interval
            await wait_event(wake, timeout)
            if progressed:
                # Busy: let the changes committed meanwhile gather for one read.
                await asyncio.sleep(max(0.0, started + interval - _now()))

    async def _deliver_batch(self, consumer: Consumer, lease: ConsumerLease, changes: list[Change], pos: Position) -> None:
        fault = self._settings.fault_point
        if consumer.transactional:
            async with lease.write() as tx:
                await consumer.deliver(changes, tx)
                crash_point(fault, "relay_after_deliver")
                await lease.save_offset(pos, len(changes), tx)
        else:
            await consumer.deliver(changes, None)
            crash_point(fault, "relay_after_deliver")
            await lease.save_offset(pos, len(changes))
        consumer.after_commit()
