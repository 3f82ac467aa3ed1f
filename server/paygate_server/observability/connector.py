"""Processor latency: a connector wrapper that times every call.

The observability extension's ``wrap_connector`` returns it; ``app.build_gateway`` applies
that once, before building the services, so processing, refunds and the reconciler all
receive this one wrapper (``gateway.connector``) and nothing is swapped afterwards.
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from paygate_server.observability.metrics import PROCESSOR_DURATION
from paygate_server.processing.connectors import (
    ChargeRequest,
    ChargeResult,
    Connector,
    RefundRequest,
    RefundResult,
    SettlementRecord,
)

__all__ = ["InstrumentedConnector"]


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
