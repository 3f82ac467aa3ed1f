"""Processor latency: a connector wrapper that times every call.

The observability extension's ``wrap_connector`` returns it; ``app.build_gateway`` applies
that to the default processor's connector once, before building the services, so
processing, refunds and the reconciler all receive this one wrapper (``gateway.connector``)
and nothing is swapped afterwards; each processor account's connector is wrapped the same
way when ``processors/registry.py`` builds it.
"""
from __future__ import annotations

import datetime as _dt
import functools
import time
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

from paygate_server.observability.metrics import PROCESSOR_DURATION
from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeRequest,
    ChargeResult,
    Connector,
    RefundRequest,
    RefundResult,
    SettlementRecord,
    SyncKind,
    VoidRequest,
    WebhookReply,
)

__all__ = ["InstrumentedConnector"]

T = TypeVar("T")


class InstrumentedConnector:
    """Delegates to ``inner`` and observes ``paygate_processor_request_duration_seconds``."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.name = inner.name
        self.resend_answers_s = inner.resend_answers_s
        # Labelled children, cached (one dict lookup a call).
        self._child = functools.cache(functools.partial(PROCESSOR_DURATION.labels, self.name))

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        outcome = "exception"
        try:
            result = await call
            outcome = result.outcome.value if isinstance(result, ChargeResult | RefundResult) else "ok"
            return result
        finally:
            self._child(operation, outcome).observe(time.perf_counter() - started)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        return await self._timed("charge", self.inner.charge(request))

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        return await self._timed("capture", self.inner.capture(request))

    async def void(self, request: VoidRequest) -> ChargeResult:
        return await self._timed("void", self.inner.void(request))

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        return await self._timed("lookup", self.inner.lookup(reference, kind, processor_id=processor_id))

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> ChargeResult | None:
        return await self._timed("cancel_by_reference", self.inner.cancel_by_reference(payment_reference, reference))

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        return self.inner.parse_webhook(headers, body)

    async def refund(self, request: RefundRequest) -> RefundResult:
        return await self._timed("refund", self.inner.refund(request))

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        return await self._timed("settlement_report", self.inner.settlement_report(day))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:  # anything else a connector offers
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"InstrumentedConnector({self.inner!r})"
