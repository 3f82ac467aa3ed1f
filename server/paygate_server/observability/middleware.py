"""Request counts and latency per route template: pure ASGI, a few microseconds a request.

The route template (``/api/v1/payment/intent/{intent_id}``, never the concrete path) comes
from ``scope["route"]``, which Starlette's router sets on the shared scope; requests that
match no route are counted as ``unmatched``, so random paths cannot blow up the label set.
Labelled children are cached, so the hot path is one dict lookup per metric.
"""
from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate_server.observability.metrics import HTTP_DURATION, HTTP_IN_PROGRESS, HTTP_REQUESTS

__all__ = ["MetricsMiddleware"]

UNMATCHED = "unmatched"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        HTTP_IN_PROGRESS.inc()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            HTTP_IN_PROGRESS.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"]
            key = (method, template, status)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = HTTP_REQUESTS.labels(method, template, str(status))
            counter.inc()
            hkey = (method, template)
            histogram = self._histograms.get(hkey)
            if histogram is None:
                histogram = self._histograms[hkey] = HTTP_DURATION.labels(method, template)
            histogram.observe(time.perf_counter() - started)
