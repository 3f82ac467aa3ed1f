"""Real-time status: wake long-polls and SSE streams when an intent changes, on any worker.

How a wake-up travels: every change to an intent, transaction or refund is written to
``change_log`` by a database trigger. On PostgreSQL the same trigger issues
``NOTIFY paygate_changes, '<intent id>'``, delivered at commit to one ``LISTEN``ing
connection per worker process. On SQLite (one host), each worker tails ``change_log`` by id
every ``PAYGATE_CHANGE_POLL_INTERVAL_S`` (20 ms): SQLite has one writer at a time, so ids
become visible in commit order and a high-water mark skips nothing. Either way the worker
then wakes its local waiters for that intent, which re-read the intent from the database.
The signal is read in ``paygate_server.storage.notifications``; this module only fans it
out, to a per-process registry of waiters.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from paygate_server.storage import Database
from paygate_server.storage.availability import log_failure
from paygate_server.storage.notifications import follow_changes
from paygate_server.waiting import wait_event

__all__ = ["ChangeNotifier", "Subscription"]

log = logging.getLogger("paygate.realtime")


class Subscription:
    """Wakes when its intent changes. Subscribe *before* reading state, so a change between
    the read and the wait is never missed."""

    def __init__(self, notifier: ChangeNotifier, intent_id: str) -> None:
        self._notifier = notifier
        self.intent_id = intent_id
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """True if a change arrived (the flag is then reset), False on timeout."""
        if not await wait_event(self._event, timeout):
            return False
        self._event.clear()
        return True

    def wake(self) -> None:
        """The intent changed (the notifier's call)."""
        self._event.set()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self._notifier._unsubscribe(self)


class ChangeNotifier:
    def __init__(self, db: Database, *, poll_interval_s: float = 0.02) -> None:
        self._db = db
        self._poll_interval_s = poll_interval_s
        self._waiters: dict[str, set[Subscription]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._listeners: list[Callable[[str], None]] = []

    def add_listener(self, callback: Callable[[str], None]) -> None:
        """Called with the intent id of every change (e.g. to wake the reconciler)."""
        self._listeners.append(callback)

    def subscribe(self, intent_id: str) -> Subscription:
        sub = Subscription(self, intent_id)
        self._waiters[intent_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._waiters.get(sub.intent_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._waiters[sub.intent_id]

    def publish(self, intent_id: str) -> None:
        """Wake this process's waiters for an intent (also called for local writes)."""
        for sub in tuple(self._waiters.get(intent_id, ())):
            sub.wake()
        for callback in self._listeners:
            callback(intent_id)

    @property
    def waiter_count(self) -> int:
        return sum(len(s) for s in self._waiters.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="paygate-change-notifier")
        # Listening before we serve: no change committed after start-up is missed.
        if not await wait_event(self._ready, 30):
            raise TimeoutError("the change notifier did not start listening within 30 s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await follow_changes(self._db, self.publish, self._ready.set,
                                     poll_interval_s=self._poll_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log_failure(log, "change notifier failed; reconnecting")
                # Anything missed while down: wake everyone so they re-read.
                for intent_id in list(self._waiters):
                    self.publish(intent_id)
                await asyncio.sleep(1.0)
