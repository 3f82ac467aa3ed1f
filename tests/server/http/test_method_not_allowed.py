"""A wrong method is ``405 method_not_allowed`` in the error shape, with ``Allow`` naming
every method the path is served with (RFC 9110 §15.5.6: a 405 must carry it).

Found by schemathesis (check ST204) against a running gateway: the 405 had no ``Allow`` at
all — the app's handler dropped the header Starlette's router put on the exception, and
that header would have named only the first route of a path that is several routes
(``/api/v1/webhooks`` is a GET route and a POST route)."""
from __future__ import annotations

import pytest

from tests.support.app import InProcessGateway

WRONG_METHODS = [
    ("PUT", "/api/v1/payment/intent/pi_x", "GET, HEAD"),
    ("DELETE", "/api/v1/payment/intent", "POST"),  # a payment-path route (http/direct_routes.py)
    ("GET", "/api/v1/payment/process", "POST"),
    ("TRACE", "/api/v1/payment/refund/re_x", "GET, HEAD"),
    ("PUT", "/api/v1/webhooks", "GET, HEAD, POST"),
    ("GET", "/api/v1/webhooks/we_x", "DELETE"),
    ("POST", "/checkout/v1/keys", "GET, HEAD"),
]


@pytest.mark.parametrize(("method", "path", "allow"), WRONG_METHODS)
async def test_a_wrong_method_names_the_methods_allowed(gw: InProcessGateway, method: str, path: str,
                                                        allow: str) -> None:
    r = await gw.http.request(method, path)
    assert r.status_code == 405, r.text
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert r.headers.get("allow") == allow, r.headers


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/v1/payment/intent/"),  # a payment-path route (http/direct_routes.py)
    ("GET", "/api/v1/payment/intents/"),
    ("GET", "/api/v1/webhooks/"),
    ("GET", "/checkout/v1/keys/"),
])
async def test_a_trailing_slash_is_an_unknown_route_not_a_redirect(gw: InProcessGateway, method: str,
                                                                    path: str) -> None:
    """docs/api.md: unknown routes are 404 resource_missing. Starlette's router redirected
    these (307) to a Location built from the request's own Host header."""
    r = await gw.http.request(method, path, headers={"Host": "evil.example"})
    assert r.status_code == 404, (r.status_code, r.headers)
    assert r.json()["error"]["code"] == "resource_missing"
    assert "location" not in r.headers
