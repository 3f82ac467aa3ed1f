"""Pure ASGI middleware: a request id and ``nosniff`` on every response, and errors that never leak.

Pure ASGI (not BaseHTTPMiddleware) keeps the per-request cost to a dict lookup and one
header append.
"""
from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate_server import jsoncodec
from paygate_server.errors import error_body
from paygate_server.ids import random_token
from paygate_server.storage.availability import RETRY_AFTER_S, is_database_unavailable

__all__ = ["MERCHANT_KEY", "RequestIdMiddleware", "request_id_of"]

log = logging.getLogger("paygate.http")
_KEY = "paygate.request_id"
# Every answer says what it is (JSON, HTML, JavaScript, an event stream): no browser may read
# one as something else, a JSON error as a script, say. Responses that set their own security
# headers (the checkout frame, the console) already carry it.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# The authenticated merchant of a request, for its log line (set by ``api_endpoint``).
MERCHANT_KEY = "paygate.merchant_id"


def request_id_of(scope: Scope) -> str:
    rid = scope.get(_KEY)
    if rid is None:
        rid = scope[_KEY] = "req_" + random_token(12)
    return rid


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        header = (b"x-request-id", rid.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", [])
                if any(name.lower() == _NOSNIFF[0] for name, _ in headers):
                    message["headers"] = [*headers, header]
                else:
                    message["headers"] = [*headers, header, _NOSNIFF]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if is_database_unavailable(exc):
                # An outage, not a bug (SPEC §2): one line in the log, 503 + Retry-After to
                # the client, who may retry (with its Idempotency-Key) once it is over.
                log.warning("database unavailable: %s", type(exc).__name__, extra={"request_id": rid})
                status, code, message = 503, "service_unavailable", "the service is temporarily unavailable; retry later"
                extra = [(b"retry-after", str(RETRY_AFTER_S).encode())]
            else:
                # Last line of defence: the traceback goes to the log (with the request id),
                # never to the client.
                log.exception("unhandled error", extra={"request_id": rid})
                status, code, message = 500, "internal_error", "an internal error occurred"
                extra = []
            if started:
                raise
            body = jsoncodec.dumps(error_body(code, message, rid))
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                *extra, header, _NOSNIFF]})
            await send({"type": "http.response.body", "body": body})
