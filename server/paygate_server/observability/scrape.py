"""``GET /metrics``: the registry's series plus gauges read from the database on scrape.

Database-derived gauges (intents by status, the reconciler's and the webhook sender's
backlogs, the open late outcomes, the change log's size) are re-read at most every
``PAYGATE_METRICS_DB_REFRESH_S`` (default 5 s), so a tight scrape loop cannot turn into a
table-scan loop. The webhook backlog is the pending rows of ``webhook_deliveries``; the open
late outcomes are the ``late_outcomes`` rows no operator has marked handled — the metric an
alert watches, since the WARNING logged when one is recorded is only a log line.

When the database cannot be read, the scrape still answers 200 (the process's own series
are still true) with ``paygate_metrics_database_up 0`` and *without* the database-derived
gauges — absent, never a made-up 0 that would read as "no backlog" — and logs one line. This
is the Prometheus exporter guidance for a partial failure (an ``up``-style gauge, not a
failed scrape), documented in docs/operations.md.
The change log's rows and bytes and the archive's lag (changes the archive consumer has
not been delivered) come from :class:`.storage.history_prune.HistoryPruneStore`.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from paygate_server.errors import ApiError
from paygate_server.http.api import error_response
from paygate_server.http.hosts import host_names_in, parse_host, safe_without_configuration
from paygate_server.http.middleware import request_id_of
from paygate_server.intents.schemas import STATUSES
from paygate_server.observability.metrics import scrape_registry
from paygate_server.storage.gauges import (
    read_late_outcomes_open,
    read_payment_counts,
    read_webhook_backlog,
)
from paygate_server.storage.history_prune import HistoryPruneStore, LogSize

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["DatabaseGauges", "is_direct_loopback", "metrics_endpoint"]

log = logging.getLogger("paygate.metrics")


class _Families:
    """A registry-shaped holder, so ``generate_latest`` can render ready-made families."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class DatabaseGauges:
    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._at = float("-inf")
        self._families: list[Metric] = []
        self._lock = asyncio.Lock()

    async def collect(self, gateway: Gateway) -> list[Metric]:
        if time.monotonic() - self._at < self.refresh_s:
            return self._families
        async with self._lock:
            if time.monotonic() - self._at >= self.refresh_s:
                self._families = await self._read(gateway)
                self._at = time.monotonic()
        return self._families

    async def _read(self, gateway: Gateway) -> list[Metric]:
        def up(value: int) -> Metric:
            return GaugeMetricFamily("paygate_metrics_database_up",
                                     "1 if the last read of the database-derived gauges worked.", value=value)

        try:
            counts = await read_payment_counts(gateway.db)
            webhooks = await read_webhook_backlog(gateway.db)
            late_open = await read_late_outcomes_open(gateway.db)
            history = await HistoryPruneStore(gateway.db).size()
        except Exception as exc:
            # One line per refresh, not a traceback every few seconds for as long as it lasts.
            log.warning("metrics: reading the database failed, its gauges are left out: %s", _one_line(exc))
            return [up(0)]
        intents = GaugeMetricFamily("paygate_payment_intents", "Payment intents by status.", labels=["status"])
        for status in STATUSES:
            intents.add_metric([status], counts.intents_by_status.get(status, 0))
        families = [
            up(1), intents,
            GaugeMetricFamily("paygate_reconcile_backlog",
                              "Charge attempts and refunds whose outcome the reconciler still owns.",
                              value=counts.reconcile_backlog),
            GaugeMetricFamily("paygate_reconcile_overdue", "Reconciler queue rows whose next check is due now or past.",
                              value=counts.reconcile_overdue),
        ]
        families.append(GaugeMetricFamily("paygate_webhook_backlog",
                                          "Webhook deliveries not yet delivered or given up.", value=webhooks))
        families.append(GaugeMetricFamily("paygate_late_outcomes_open",
                                          "Settled outcomes a processor contradicted later, not yet marked handled.",
                                          value=late_open))
        families.extend(_history_gauges(history))
        return families


def _one_line(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _history_gauges(size: LogSize) -> list[Metric]:
    """The change log's size in the database and the archive's lag (docs/history.md)."""
    families: list[Metric] = [
        GaugeMetricFamily("paygate_change_log_rows",
                          "Change-log rows in the database (PostgreSQL: the planner's estimate).", value=size.rows),
        GaugeMetricFamily("paygate_change_log_bytes",
                          "Bytes the change log and its indexes take in the database.", value=size.bytes),
    ]
    if size.pending_archive is not None:
        families.append(GaugeMetricFamily("paygate_archive_lag_changes",
                                          "Changes captured but not yet archived.", value=size.pending_archive))
    return families


def _authorized(request: Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


# Headers a reverse proxy adds: a request carrying one was relayed for someone else, so
# its loopback peer address (a proxy on the same host) says nothing about the client.
_FORWARDING_HEADERS = (b"forwarded", b"x-forwarded-for", b"x-real-ip")


def is_direct_loopback(scope: Scope) -> bool:
    """The TCP peer is this host (127.0.0.0/8, ::1, ::ffff:127.x), no proxy relayed the
    request, and it names the gateway by an IP literal or ``localhost``. No peer address (a
    Unix socket): not loopback, so the default stays closed.

    The name matters because of DNS rebinding: a page open in a browser on this host can
    make its own name resolve to 127.0.0.1 and read what the gateway answers it — its
    requests come from a loopback peer, but under ``Host: its-name`` (paygate_server.http.hosts)."""
    hosts = host_names_in(scope["headers"])
    host = parse_host(hosts[0]) if len(hosts) == 1 else None
    if host is None or not safe_without_configuration(host):
        return False
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_loopback:
        return False
    return not any(name in _FORWARDING_HEADERS for name, _ in scope["headers"])


async def metrics_endpoint(request: Request) -> Response:
    gateway: Gateway = request.state.gateway
    token = gateway.settings.metrics_token
    if not token and not is_direct_loopback(request.scope):
        # Without a token, /metrics exists only for this host (a local Prometheus agent or
        # an operator on the box): from anywhere else it answers like an unknown path, so
        # the public API port reveals nothing about traffic or backlogs.
        return error_response(ApiError("resource_missing", "no such endpoint"), request_id_of(request.scope))
    if token and not _authorized(request, token):
        code = "missing_credentials" if "authorization" not in request.headers else "invalid_api_key"
        response = error_response(ApiError(code, "GET /metrics needs Authorization: Bearer <PAYGATE_METRICS_TOKEN>"),
                                  request_id_of(request.scope))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    families = await gateway.metrics_db.collect(gateway)
    body = generate_latest(scrape_registry()) + generate_latest(_Families(families))  # type: ignore[arg-type]
    return Response(body, 200, media_type=CONTENT_TYPE_LATEST)
