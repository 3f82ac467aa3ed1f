"""Writing the console's per-minute samples (``console_samples``, storage/schema_samples.py).

Every gateway worker writes its own latency histogram of each minute (:func:`write_latency`,
the row replaced as the minute fills up: only that worker writes it); the cluster-wide
backlogs are sampled once per minute by whichever worker comes first
(:func:`sample_backlogs`: an insert that does nothing when the minute is there); samples
older than the retention are deleted (:func:`prune_samples`). The overview reads them
(storage/console_overview.py).

A latency row's ``buckets`` is a JSON list of request counts, one per upper bound of
:data:`LATENCY_BOUNDS_S` plus one for everything slower (Prometheus's ``le`` buckets, not
cumulative). These are also ``/metrics``' latency buckets (observability/metrics.py), so
the two tell the same story; changing them changes how older rows read.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select

from paygate_server import jsoncodec
from paygate_server.storage.dialect import insert_ignore, upsert
from paygate_server.storage.engine import Database
from paygate_server.storage.gauges import read_webhook_backlog
from paygate_server.storage.schema import reconcile_queue
from paygate_server.storage.schema_samples import console_samples

__all__ = ["LATENCY_BOUNDS_S", "LATENCY", "RECONCILE_BACKLOG", "WEBHOOK_BACKLOG", "CLUSTER",
           "write_latency", "sample_backlogs", "prune_samples"]

LATENCY_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENCY = "latency"
RECONCILE_BACKLOG = "reconcile_backlog"
WEBHOOK_BACKLOG = "webhook_backlog"
CLUSTER = ""  # the worker of a cluster-wide sample


async def write_latency(db: Database, worker: str, minutes: Mapping[int, Sequence[int]]) -> None:
    """Store ``worker``'s histogram of each minute (Unix seconds), replacing what it wrote
    before for that minute."""
    if not minutes:
        return
    async with db.write() as conn:
        for minute, counts in sorted(minutes.items()):
            if len(counts) != len(LATENCY_BOUNDS_S) + 1:
                raise ValueError(f"a latency histogram has {len(LATENCY_BOUNDS_S) + 1} buckets, not {len(counts)}")
            buckets = jsoncodec.dumps(list(counts)).decode()
            await upsert(conn, console_samples, {"minute": minute, "name": LATENCY, "worker": worker,
                                                 "value": sum(counts), "buckets": buckets},
                         {"value": sum(counts), "buckets": buckets})


async def sample_backlogs(db: Database, minute: int) -> bool:
    """Record the reconciler's backlog (its queue's rows: operations whose outcome is not
    known) and the webhook backlog (pending deliveries) for ``minute``, unless a worker did
    already; True when this call wrote them."""
    async with db.read() as conn:
        reconcile = int((await conn.execute(select(func.count()).select_from(reconcile_queue))).scalar_one())
    webhooks = await read_webhook_backlog(db)
    async with db.write() as conn:
        wrote = await insert_ignore(conn, console_samples, {"minute": minute, "name": RECONCILE_BACKLOG,
                                                            "worker": CLUSTER, "value": reconcile, "buckets": None})
        wrote = await insert_ignore(conn, console_samples, {
            "minute": minute, "name": WEBHOOK_BACKLOG, "worker": CLUSTER, "value": webhooks,
            "buckets": None}) or wrote
    return wrote


async def prune_samples(db: Database, before_minute: int) -> int:
    """Delete the samples of the minutes before ``before_minute``; how many rows went."""
    async with db.write() as conn:
        result = await conn.execute(delete(console_samples).where(console_samples.c.minute < before_minute))
    return int(result.rowcount)
