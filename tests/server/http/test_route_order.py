"""The payment path's routes are tried first, and that changes which route answers no request.

Starlette tries an app's routes in order until one matches the path and the method; the
four requests of a payment (SPEC §10) are matched first (docs/perf/history.md, "The payment
path's routes first"), which is only safe because no other route matches them."""
from __future__ import annotations

from starlette.routing import Match, Route

from paygate_server.app import create_app
from paygate_server.config import Settings

PAYMENT = [("POST", "/api/v1/payment/intent"), ("POST", "/checkout/v1/tokens"),
           ("POST", "/api/v1/payment/process"), ("GET", "/api/v1/payment/status")]


def _scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def test_the_payment_path_is_matched_first() -> None:
    routes = create_app(Settings()).routes
    assert [(min(r.methods or ("",)), r.path) for r in routes[:4] if isinstance(r, Route)] == PAYMENT


def test_no_other_route_answers_a_payment_request() -> None:
    routes = create_app(Settings()).routes
    for method, path in PAYMENT:
        full = [r for r in routes if r.matches(_scope(method, path))[0] is Match.FULL]
        assert [getattr(r, "path", None) for r in full] == [path], (method, path)
