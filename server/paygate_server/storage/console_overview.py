"""The console's overview (SPEC §12 "Overview"): the last hour, minute by minute, for the
whole cluster.

Everything comes from the shared database, never from one process's counters, so every
worker's and every host's payments count:

* payments by outcome, success rate and processor outcomes per route — from
  ``transactions``, each operation counted in the minute it was last updated (its settle);
* the reconciler's and the webhooks' backlogs and the gateway's latency — from
  ``console_samples``, written by every worker (storage/console_samples.py); the latency
  histograms of all workers of a minute are summed before p50/p99 are taken;
* the late outcomes no operator has marked handled — a count now, not a series: it is a
  to-do list (storage/late_outcomes.py), read by the same statement as ``/metrics``' gauge.

Each series has exactly 60 points, the oldest first, ending with the minute ``now`` is in
(the current minute is partial); a minute with nothing in it is zeros (counts) or None
(a rate, a latency, a backlog nobody sampled). ``minute`` is Unix seconds.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.storage.console_samples import (
    LATENCY,
    LATENCY_BOUNDS_S,
    RECONCILE_BACKLOG,
    WEBHOOK_BACKLOG,
)
from paygate_server.storage.engine import Database
from paygate_server.storage.gauges import read_late_outcomes_open
from paygate_server.storage.statements import Sql, fetch_all

__all__ = ["POINTS", "OutcomeMinute", "RateMinute", "RouteMinute", "BacklogMinute", "LatencyMinute", "Overview",
           "overview", "quantile"]

POINTS = 60
_MINUTE_US = 60_000_000

# One statement for both databases: integer division of integers is integer on both.
_SETTLES = Sql("""
    SELECT updated_at / 60000000 AS minute, connector, kind, status, count(*) AS n FROM transactions
    WHERE updated_at >= :since GROUP BY updated_at / 60000000, connector, kind, status""")
_SAMPLES = Sql("SELECT minute, name, value, buckets FROM console_samples WHERE minute >= :since")


class OutcomeMinute(NamedTuple):
    """Payments' operations settled in the minute, by what they made of the payment."""
    minute: int
    succeeded: int  # charges approved
    requires_capture: int  # authorizations approved (held)
    captured: int  # holds captured
    canceled: int  # holds voided
    failed: int  # charges and authorizations declined or refused
    unknown: int  # charges and authorizations whose outcome went unknown


class RateMinute(NamedTuple):
    minute: int
    success_rate: float | None  # approved / (approved + failed) charges and authorizations; None: none


class RouteMinute(NamedTuple):
    """One route's (processor account's, or the default processor's) answers in the minute."""
    minute: int
    approved: int
    declined: int
    unknown: int


class BacklogMinute(NamedTuple):
    minute: int
    reconcile: int | None  # the reconciler's queue (operations of unknown outcome); None: not sampled
    webhooks: int | None  # pending webhook deliveries; None: not sampled


class LatencyMinute(NamedTuple):
    minute: int
    requests: int  # all workers' requests in the minute
    p50_ms: float | None  # None: no requests
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class Overview:
    minutes: list[int]  # the 60 minutes, oldest first
    outcomes: list[OutcomeMinute]
    success_rate: list[RateMinute]
    routes: dict[str, list[RouteMinute]]  # by route (pa_… or the default's name), routes seen this hour
    backlogs: list[BacklogMinute]
    latency: list[LatencyMinute]
    late_outcomes_open: int  # now, not per minute


def quantile(q: float, counts: list[int]) -> float | None:
    """The ``q`` quantile, in seconds, of a histogram of :data:`LATENCY_BOUNDS_S` buckets,
    interpolated within its bucket (as Prometheus's ``histogram_quantile``); past the last
    bound, the last bound. None for an empty histogram."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(LATENCY_BOUNDS_S):
                return LATENCY_BOUNDS_S[-1]
            lower = LATENCY_BOUNDS_S[index - 1] if index else 0.0
            return lower + (LATENCY_BOUNDS_S[index] - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS_S[-1]


def _outcome(kind: str, status: str) -> str | None:
    if status == "succeeded":
        return {"charge": "succeeded", "authorization": "requires_capture", "capture": "captured",
                "void": "canceled"}.get(kind)
    if kind in ("charge", "authorization") and status in ("failed", "unknown"):
        return status
    return None  # pending: not settled yet; a failed capture or void leaves the payment as it was


_OUTCOMES = ("succeeded", "requires_capture", "captured", "canceled", "failed", "unknown")  # OutcomeMinute's order
_ROUTE_OUTCOME = {"succeeded": "approved", "failed": "declined", "unknown": "unknown"}


async def overview(db: Database, now: int | None = None) -> Overview:
    """The last hour's series up to ``now`` (microseconds; the current time by default)."""
    now = now_us() if now is None else now
    last = now // _MINUTE_US
    first = last - POINTS + 1
    minutes = [m * 60 for m in range(first, last + 1)]
    async with db.read_one() as conn:
        settles = await fetch_all(conn, _SETTLES, since=first * _MINUTE_US)
    async with db.read_one() as conn:
        samples = await fetch_all(conn, _SAMPLES, since=first * 60)
    late_open = await read_late_outcomes_open(db)

    outcomes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    routes: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for row in settles:
        minute = int(row["minute"])
        if not first <= minute <= last:
            continue  # updated "in the future" by a host whose clock runs ahead
        n = int(row["n"])
        outcome = _outcome(row["kind"], row["status"])
        if outcome is not None:
            outcomes[minute][outcome] += n
        if row["status"] in _ROUTE_OUTCOME:
            routes[row["connector"]][minute][_ROUTE_OUTCOME[row["status"]]] += n

    latency: dict[int, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BOUNDS_S) + 1))
    backlog: dict[str, dict[int, int]] = defaultdict(dict)
    for row in samples:
        minute = int(row["minute"]) // 60
        if row["name"] == LATENCY:
            counts = jsoncodec.loads(row["buckets"])
            merged = latency[minute]
            for index, count in enumerate(counts[:len(merged)]):
                merged[index] += int(count)
        elif row["name"] in (RECONCILE_BACKLOG, WEBHOOK_BACKLOG):
            backlog[row["name"]][minute] = int(row["value"])

    def rate(counts: dict[str, int]) -> float | None:
        approved = counts.get("succeeded", 0) + counts.get("requires_capture", 0)
        tried = approved + counts.get("failed", 0)
        return approved / tried if tried else None

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 3)

    span = range(first, last + 1)
    return Overview(
        minutes=minutes,
        outcomes=[OutcomeMinute(m * 60, *(outcomes[m].get(name, 0) for name in _OUTCOMES)) for m in span],
        success_rate=[RateMinute(m * 60, rate(outcomes[m])) for m in span],
        routes={route: [RouteMinute(m * 60, by_minute[m].get("approved", 0), by_minute[m].get("declined", 0),
                                    by_minute[m].get("unknown", 0)) for m in span]
                for route, by_minute in sorted(routes.items())},
        backlogs=[BacklogMinute(m * 60, backlog[RECONCILE_BACKLOG].get(m), backlog[WEBHOOK_BACKLOG].get(m))
                  for m in span],
        latency=[LatencyMinute(m * 60, sum(latency[m]) if m in latency else 0,
                               ms(quantile(0.5, latency[m])) if m in latency else None,
                               ms(quantile(0.99, latency[m])) if m in latency else None) for m in span],
        late_outcomes_open=late_open,
    )
