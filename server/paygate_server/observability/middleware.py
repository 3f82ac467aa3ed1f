"""Request counts and latency per route template: pure ASGI, a few microseconds a request.

The route template (``/api/v1/payment/intent/{intent_id}``, never the concrete path) comes
from ``scope["route"]``, which Starlette's router sets on the shared scope; requests that
match no route are counted as ``unmatched``, so random paths cannot blow up the label set.
Labelled children are cached, so the hot path is one dict lookup per metric. The same
latency also goes into this worker's per-minute histogram for the console's overview
(:mod:`.console_sampler`).

The same numbers make the request log: one ``paygate.request`` line per request (time,
request id, merchant id, method, route template, status, latency, error code; see
:mod:`paygate_server.logs`). The error code is read from the SPEC §2 error body of a
``>= 400`` answer, whoever produced it (the endpoint, the 500 fallback, a 503 handler), so
successful requests never pay for it; the merchant id is what ``api_endpoint`` puts in the
scope once a request is authenticated.
"""
from __future__ import annotations

import functools
import logging
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate_server.http.middleware import MERCHANT_KEY, request_id_of
from paygate_server.logs import REQUEST_LOGGER
from paygate_server.observability.console_sampler import MINUTE_LATENCY
from paygate_server.observability.metrics import HTTP_DURATION, HTTP_IN_PROGRESS, HTTP_REQUESTS

__all__ = ["MetricsMiddleware"]

UNMATCHED = "unmatched"
request_log = logging.getLogger(REQUEST_LOGGER)


def _error_code(body: bytes) -> str | None:
    try:
        code = orjson.loads(body)["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Labelled children, cached: a request then pays one dict lookup per metric.
        self._counter = functools.cache(lambda method, route, status: HTTP_REQUESTS.labels(method, route, str(status)))
        self._histogram = functools.cache(HTTP_DURATION.labels)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering
        error_code: str | None = None
        HTTP_IN_PROGRESS.inc()

        async def send_and_note(message: Message) -> None:
            nonlocal status, error_code
            if message["type"] == "http.response.start":
                status = message["status"]
            elif status >= 400 and error_code is None and message["type"] == "http.response.body":
                error_code = _error_code(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            HTTP_IN_PROGRESS.dec()
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            method = scope["method"]
            self._counter(method, template, status).inc()
            elapsed = time.perf_counter() - started
            self._histogram(method, template).observe(elapsed)
            MINUTE_LATENCY.observe(elapsed)
            if request_log.isEnabledFor(logging.INFO):
                request_log.info("request", extra={"fields": {
                    "request_id": request_id_of(scope), "merchant_id": scope.get(MERCHANT_KEY),
                    "method": method, "route": template, "status": status,
                    "latency_ms": round(elapsed * 1000, 2), "error_code": error_code}})
