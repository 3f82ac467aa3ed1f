"""Prometheus metrics at ``GET /metrics`` (:data:`extension`, listed in ``app.EXTENSIONS``).

- ``paygate_http_requests_total{method,route,status}`` and
  ``paygate_http_request_duration_seconds{method,route}`` — pure ASGI middleware, per route
  template; ``paygate_http_requests_in_progress``.
- ``paygate_processor_request_duration_seconds{connector,operation,outcome}`` — the
  connector is wrapped once at start-up, before any service gets it (see :mod:`.connector`).
- The console overview's per-minute latency and backlog samples, written by every worker
  to the database (:mod:`.console_sampler`, a background task).
- Read on scrape: ``paygate_payment_intents{status}``, ``paygate_reconcile_backlog``,
  ``paygate_reconcile_overdue``, ``paygate_webhook_backlog`` (once webhooks exist),
  ``paygate_late_outcomes_open``.

Without ``PAYGATE_METRICS_TOKEN``, served only to direct loopback clients (anyone else
gets ``404``); with it, a scrape needs ``Authorization: Bearer <token>`` from anywhere. Several workers: ``PROMETHEUS_MULTIPROC_DIR``
(:mod:`.metrics`). Operator notes in docs/operations.md, "Metrics".
"""
from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import Route

from paygate_server.extensions import Extension
from paygate_server.observability.connector import InstrumentedConnector
from paygate_server.observability.console_sampler import ConsoleSampler, worker_name
from paygate_server.observability.metrics import mark_process_dead
from paygate_server.observability.middleware import MetricsMiddleware
from paygate_server.observability.scrape import DatabaseGauges, metrics_endpoint

if TYPE_CHECKING:
    from paygate_server.processing.connectors import Connector
    from paygate_server.state import Gateway

__all__ = ["InstrumentedConnector", "MetricsMiddleware", "ObservabilityExtension", "extension"]

class ObservabilityExtension(Extension):
    name = "observability"
    provides = ("metrics_db",)
    routes = (Route("/metrics", metrics_endpoint, methods=["GET"]),)
    middleware = (Middleware(MetricsMiddleware),)

    def wrap_connector(self, connector: Connector) -> Connector:
        return InstrumentedConnector(connector)

    async def setup(self, gateway: Gateway) -> None:
        gateway.metrics_db = DatabaseGauges(gateway.settings.metrics_db_refresh_s)

    def background_tasks(self, gateway: Gateway) -> list[Coroutine[Any, Any, None]]:
        return [ConsoleSampler(gateway.db, worker_name()).run_forever()]

    async def teardown(self, gateway: Gateway) -> None:
        mark_process_dead()


extension = ObservabilityExtension()
