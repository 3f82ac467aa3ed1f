"""The gateway's Prometheus metrics: definitions, and the registry a scrape reads.

Single process: the metrics live in this module's own registry (plus the standard
process collector). Several workers (``paygate serve --workers N``): set
``PROMETHEUS_MULTIPROC_DIR`` to an empty, writable folder *before* the gateway starts;
prometheus_client then keeps every worker's values in memory-mapped files there, and a
scrape (answered by any one worker) adds them up. Clear the folder when the gateway
restarts (docs/operations.md, "Metrics").
"""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.process_collector import ProcessCollector

from paygate_server.storage.console_samples import LATENCY_BOUNDS_S

__all__ = ["HTTP_DURATION", "HTTP_IN_PROGRESS", "HTTP_REQUESTS", "PROCESSOR_DURATION", "mark_process_dead",
           "multiprocess_dir", "scrape_registry"]

# The console's per-minute latency samples use the same buckets (storage/console_samples.py).
_LATENCY_BUCKETS = LATENCY_BOUNDS_S

# Definitions are registered in a private registry (never the global default one), so
# importing this module twice in one process (tests) or in a host application is harmless.
_REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "paygate_http_requests", "HTTP requests answered, by route template and status.",
    ("method", "route", "status"), registry=_REGISTRY)
HTTP_DURATION = Histogram(
    "paygate_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template "
    "(long-polls and event streams included: they hold on purpose).",
    ("method", "route"), buckets=_LATENCY_BUCKETS, registry=_REGISTRY)
HTTP_IN_PROGRESS = Gauge(
    "paygate_http_requests_in_progress", "Requests being handled now.",
    registry=_REGISTRY, multiprocess_mode="livesum")
PROCESSOR_DURATION = Histogram(
    "paygate_processor_request_duration_seconds",
    "Calls to the card processor through its connector, by operation and outcome.",
    ("connector", "operation", "outcome"), buckets=_LATENCY_BUCKETS, registry=_REGISTRY)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def scrape_registry() -> CollectorRegistry:
    """What one scrape reads: every worker's values in multiprocess mode, else ours."""
    if multiprocess_dir() is None:
        return _REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def mark_process_dead() -> None:
    """Drop this stopping worker's live gauges (multiprocess mode only)."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())


if multiprocess_dir() is None:
    ProcessCollector(registry=_REGISTRY)  # process_cpu_seconds_total, memory, fds
