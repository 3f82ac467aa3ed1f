"""The console's per-minute samples (SPEC §12 overview): what the payment tables do not keep.

``console_samples``: one row per (minute, name, worker). Every gateway worker flushes its
own request-latency histogram of each minute (``name = 'latency'``, ``buckets`` a JSON list
of counts per bucket of ``observability.console_sampler.LATENCY_BOUNDS_S``), so the
overview sums the buckets of every worker and host before taking p50/p99. Backlogs are one
number per minute for the whole cluster (``worker = ''``), written by whichever worker gets
there first (an insert that does nothing when the minute is there). ``minute`` is Unix
seconds at the start of the minute. Rows older than ~24 h are deleted by the same task.

Not captured into ``change_log``: these are measurements, not a payment's story.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table, Text

from paygate_server.storage.schema import metadata

__all__ = ["console_samples"]

console_samples = Table(
    "console_samples", metadata,
    Column("minute", BigInteger, primary_key=True),  # Unix seconds, a multiple of 60
    Column("name", String(32), primary_key=True),  # latency | reconcile_backlog | webhook_backlog
    Column("worker", String(64), primary_key=True),  # host:pid:random; '' for a cluster-wide sample
    Column("value", BigInteger, nullable=True),  # a backlog's count
    Column("buckets", Text, nullable=True),  # latency: JSON list of counts per bucket
)
