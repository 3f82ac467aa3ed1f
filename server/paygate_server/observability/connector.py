"""Processor latency: a connector wrapper that times every call.

Installed by :func:`instrument_connectors` at start-up, without touching the processing
code: the processing service's public ``connector`` is wrapped, and the refund service and
reconciler, which hold the *same* connector object in their ``_connector`` attribute, get
the same wrapper. That attribute name is the one coupling to those modules (a test pins it);
the clean alternative, proposed in docs/performance.md, is a ``gateway.services
["connector"]`` that every domain reads.
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import TYPE_CHECKING, Any

from paygate_server.observability.metrics import PROCESSOR_DURATION
from paygate_server.processing.connectors import (
    ChargeRequest,
    ChargeResult,
    Connector,
    RefundRequest,
    RefundResult,
    SettlementRecord,
)

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["InstrumentedConnector", "instrument_connectors"]


class InstrumentedConnector:
    """Delegates to ``inner`` and observes ``paygate_processor_request_duration_seconds``."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.name = inner.name
        self._children: dict[tuple[str, str], Any] = {}

    def _observe(self, operation: str, outcome: str, started: float) -> None:
        key = (operation, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = PROCESSOR_DURATION.labels(self.name, operation, outcome)
        child.observe(time.perf_counter() - started)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        started = time.perf_counter()
        try:
            result = await self.inner.charge(request)
        except BaseException:
            self._observe("charge", "exception", started)
            raise
        self._observe("charge", result.outcome.value, started)
        return result

    async def lookup(self, reference: str) -> ChargeResult:
        started = time.perf_counter()
        try:
            result = await self.inner.lookup(reference)
        except BaseException:
            self._observe("lookup", "exception", started)
            raise
        self._observe("lookup", result.outcome.value, started)
        return result

    async def refund(self, request: RefundRequest) -> RefundResult:
        started = time.perf_counter()
        try:
            result = await self.inner.refund(request)
        except BaseException:
            self._observe("refund", "exception", started)
            raise
        self._observe("refund", result.outcome.value, started)
        return result

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        started = time.perf_counter()
        try:
            records = await self.inner.settlement_report(day)
        except BaseException:
            self._observe("settlement_report", "exception", started)
            raise
        self._observe("settlement_report", "ok", started)
        return records

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # anything else a connector offers
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"InstrumentedConnector({self.inner!r})"


def instrument_connectors(gateway: Gateway) -> InstrumentedConnector | None:
    processing = gateway.services.get("processing")
    if processing is None:
        return None
    inner = processing.connector
    if isinstance(inner, InstrumentedConnector):
        return inner
    wrapped = InstrumentedConnector(inner)
    processing.connector = wrapped
    for name in ("refunds", "reconciler"):
        service = gateway.services.get(name)
        if service is not None and getattr(service, "_connector", None) is inner:
            service._connector = wrapped
    return wrapped
