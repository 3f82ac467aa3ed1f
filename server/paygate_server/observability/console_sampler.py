"""The console overview's samples from this worker (SPEC §12): latency and backlogs per minute.

``/metrics``' histograms are cumulative and per process; the console needs each minute of
every worker and host. So the metrics middleware also counts each request into
:data:`MINUTE_LATENCY` (this process's histogram per minute), and :class:`ConsoleSampler`,
a background task of every gateway worker, writes it to ``console_samples`` every
:data:`FLUSH_S` seconds (the current minute's row is replaced as it fills; a finished
minute is written one last time and forgotten). Once a minute it also samples the
cluster's backlogs (the first worker to get there writes them, the others' inserts do
nothing) and deletes samples older than :data:`KEEP_S`. The overview reads them
(storage/console_overview.py).

Every request the middleware sees is counted, long-polls and event streams included
(they hold on purpose, as in ``paygate_http_request_duration_seconds``).
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import os
import socket
import time

from paygate_server.ids import random_token
from paygate_server.storage.availability import log_failure
from paygate_server.storage.console_samples import (
    LATENCY_BOUNDS_S,
    prune_samples,
    sample_backlogs,
    write_latency,
)
from paygate_server.storage.engine import Database

__all__ = ["FLUSH_S", "KEEP_S", "MinuteLatency", "MINUTE_LATENCY", "ConsoleSampler", "worker_name"]

FLUSH_S = 10.0
KEEP_S = 24 * 3600
log = logging.getLogger("paygate.console_sampler")


def _minute(now_s: float) -> int:
    return int(now_s) // 60 * 60


class MinuteLatency:
    """Request counts per latency bucket per minute, in this process only."""

    def __init__(self) -> None:
        self._minutes: dict[int, list[int]] = {}

    def observe(self, seconds: float, now_s: float | None = None) -> None:
        minute = _minute(time.time() if now_s is None else now_s)
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = [0] * (len(LATENCY_BOUNDS_S) + 1)
        counts[bisect.bisect_left(LATENCY_BOUNDS_S, seconds)] += 1  # Prometheus's "le"

    def take(self, now_s: float | None = None) -> dict[int, list[int]]:
        """Every minute's counts so far; finished minutes are forgotten (written for the
        last time by the caller), the current one keeps counting."""
        current = _minute(time.time() if now_s is None else now_s)
        taken = {minute: list(counts) for minute, counts in self._minutes.items()}
        for minute in [m for m in self._minutes if m < current]:
            del self._minutes[minute]
        return taken

    def give_back(self, minutes: dict[int, list[int]]) -> None:
        """Finished minutes a failed write took: kept, so the next flush writes them."""
        for minute, counts in minutes.items():
            self._minutes.setdefault(minute, counts)


MINUTE_LATENCY = MinuteLatency()


def worker_name() -> str:
    """This worker's name in the samples: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{random_token(3)}"


class ConsoleSampler:
    def __init__(self, db: Database, worker: str, latency: MinuteLatency = MINUTE_LATENCY) -> None:
        self._db = db
        self.worker = worker
        self._latency = latency
        self._last_backlog_minute: int | None = None

    async def flush(self, now_s: float | None = None) -> None:
        """One round: this worker's latency minutes; the backlogs and the pruning once a minute."""
        now_s = time.time() if now_s is None else now_s
        taken = self._latency.take(now_s)
        try:
            await write_latency(self._db, self.worker, taken)
        except BaseException:
            self._latency.give_back({m: c for m, c in taken.items() if m < _minute(now_s)})
            raise
        minute = _minute(now_s)
        if minute != self._last_backlog_minute:
            await sample_backlogs(self._db, minute)
            await prune_samples(self._db, minute - KEEP_S)
            self._last_backlog_minute = minute

    async def run_forever(self, interval_s: float = FLUSH_S) -> None:
        while True:
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a sample lost is not worth stopping the worker
                log_failure(log, "console samples not written")
            await asyncio.sleep(interval_s)
