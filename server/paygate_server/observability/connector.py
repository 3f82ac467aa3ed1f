"""Processor latency: a connector wrapper that times every call.

The observability extension's ``wrap_connector`` returns it; ``app.build_gateway`` applies
that once, before building the services, so processing, refunds and the reconciler all
receive this one wrapper (``gateway.connector``) and nothing is swapped afterwards.
"""
from __future__ import annotations

import datetime as _dt
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

T = TypeVar("T")


def _outcome(result: ChargeResult | RefundResult) -> str:
    return result.outcome.value


class InstrumentedConnector:
    """Delegates to ``inner`` and observes ``paygate_processor_request_duration_seconds``."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.name = inner.name
        # Labelled children, cached (one dict lookup a call).
        self._child = functools.cache(functools.partial(PROCESSOR_DURATION.labels, self.name))

    def _observe(self, operation: str, outcome: str, started: float) -> None:
        self._child(operation, outcome).observe(time.perf_counter() - started)

    async def _timed(self, operation: str, call: Awaitable[T], outcome: Callable[[T], str]) -> T:
        started = time.perf_counter()
        try:
            result = await call
        except BaseException:
            self._observe(operation, "exception", started)
            raise
        self._observe(operation, outcome(result), started)
        return result

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return await self._timed("charge", self.inner.charge(request), _outcome)

    async def lookup(self, reference: str) -> ChargeResult:
        return await self._timed("lookup", self.inner.lookup(reference), _outcome)

    async def refund(self, request: RefundRequest) -> RefundResult:
        return await self._timed("refund", self.inner.refund(request), _outcome)

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        return await self._timed("settlement_report", self.inner.settlement_report(day), lambda _records: "ok")

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # anything else a connector offers
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"InstrumentedConnector({self.inner!r})"
