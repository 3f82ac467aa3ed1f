"""The payment path's four routes skip Starlette's inner layers (http/direct_routes.py) and
answer exactly as they did through them: the same status, headers and body, request ids
aside, for every kind of request to those paths — refused, malformed, too large, another
method, HEAD, a trailing slash — on both databases."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from paygate_server.app import PAYMENT_PATH, create_app
from paygate_server.http.direct_routes import DirectRoutes
from tests.support import app as support
from tests.support.signing import Credentials, SignedClient


def _client(app: Any, state: dict[str, Any], seen: list[dict[str, Any]] | None = None) -> httpx.AsyncClient:
    async def with_state(scope, receive, send):  # type: ignore[no-untyped-def]
        scope["state"] = dict(state)
        if seen is not None:
            seen.append(scope)
        await app(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=with_state), base_url="http://gateway.test")


@pytest.fixture
async def apps(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Starlette, Starlette, dict[str, Any]]]:
    """The gateway's app, and the same routes, middleware and handlers without DirectRoutes
    (every request through Starlette's layers), over one running gateway."""
    app = create_app(support.test_settings(database_url, tmp_path))
    plain = Starlette(routes=app.routes, middleware=[m for m in app.user_middleware if m.cls is not DirectRoutes],
                      exception_handlers=app.exception_handlers)
    plain.router.redirect_slashes = app.router.redirect_slashes
    async with app.router.lifespan_context(app) as state:
        yield app, plain, dict(state)


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
    rid = response.headers.get("x-request-id", "")
    assert rid.startswith("req_") and response.headers.get_list("x-content-type-options") == ["nosniff"]
    headers = sorted((k, v.replace(rid, "RID")) for k, v in response.headers.multi_items() if k != "x-request-id")
    return response.status_code, headers, response.text.replace(rid, "RID")


REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", "/api/v1/payment/intent", {"content-type": "application/json"}, b"{}"),  # unsigned: 401
    ("POST", "/api/v1/payment/intent", {"content-length": "99999999"}, b""),  # too large: 413
    ("POST", "/api/v1/payment/process", {}, b"not json"),
    ("GET", "/api/v1/payment/status?paymentIntentId=pi_x", {}, b""),
    ("POST", "/checkout/v1/tokens", {"content-type": "application/json"}, b"{}"),
    ("POST", "/checkout/v1/tokens", {"content-type": "application/json"}, b"[1, 2"),
    ("POST", "/checkout/v1/tokens", {"host": "evil.example", "origin": "https://evil.example"}, b"{}"),
    ("HEAD", "/api/v1/payment/status?paymentIntentId=pi_x", {}, b""),  # not direct: Starlette's way
    ("GET", "/api/v1/payment/intent", {}, b""),  # 405, with Allow
    ("PUT", "/api/v1/payment/process", {}, b"{}"),
    ("DELETE", "/checkout/v1/tokens", {}, b""),
    ("POST", "/api/v1/payment/intent/", {}, b"{}"),  # trailing slash
    ("GET", "/api/v1/payment/status/", {}, b""),
]


async def test_every_request_to_the_payment_paths_is_answered_as_through_starlette(apps: Any) -> None:
    app, plain, state = apps
    async with _client(app, state) as direct, _client(plain, state) as through:
        for method, target, headers, body in REQUESTS:
            a = await direct.request(method, target, headers=headers, content=body)
            b = await through.request(method, target, headers=headers, content=body)
            assert _comparable(a) == _comparable(b), (method, target)


async def test_a_signed_payment_takes_the_direct_way_and_is_answered_alike(apps: Any) -> None:
    app, plain, state = apps
    gateway = state["gateway"]
    from paygate_server.merchants import create_merchant

    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Shop", origins=["http://127.0.0.1:9"])
    creds = Credentials(pair.merchant_id, pair.api_key, pair.signing_secret)
    seen: list[dict[str, Any]] = []
    answers = []
    async with _client(app, state, seen) as direct, _client(plain, state) as through:
        for http in (direct, through):
            shop = SignedClient(http, creds)
            created = await shop.post("/api/v1/payment/intent", {"amount": 1000, "currency": "USD",
                                                                    "productDetails": {"sku": "s", "name": "S"}})
            status = await shop.get(f"/api/v1/payment/status?paymentIntentId={created.json()['paymentIntentId']}")
            answers.append([(r.status_code, sorted(r.json()), r.headers["content-type"]) for r in (created, status)])
        await direct.get("/healthz")
    assert answers[0] == answers[1] and answers[0][0][0] == 201 and answers[0][1][0] == 200
    # The router and ExceptionMiddleware mark the scopes they see; the direct ones are not,
    # but carry the route (the metrics' template), as the router would set it.
    hot = [s for s in seen if (s["method"], s["path"]) in PAYMENT_PATH]
    assert len(hot) == 2 and all("starlette.exception_handlers" not in s and "router" not in s for s in hot)
    assert [s["route"].path for s in hot] == ["/api/v1/payment/intent", "/api/v1/payment/status"]
    assert all(s["path_params"] == {} for s in hot)
    assert "starlette.exception_handlers" in seen[-1] and seen[-1]["route"].path == "/healthz"


async def _teapot(request: Request) -> Response:
    raise HTTPException(418)


async def _handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse("handled", exc.status_code)


def _sync(request: Request) -> Response:
    return PlainTextResponse("sync")


async def test_an_http_exception_of_a_direct_endpoint_goes_to_the_handler() -> None:
    async def nothing_else(scope, receive, send):  # type: ignore[no-untyped-def]
        raise AssertionError("not direct")

    app = DirectRoutes(nothing_else, [("POST", Route("/t", _teapot, methods=["POST"]))], _handler)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answer = await client.post("/t")
    assert (answer.status_code, answer.text) == (418, "handled")


def test_only_plain_async_endpoints_of_their_method_are_taken() -> None:
    with pytest.raises(ValueError, match="not a plain async endpoint"):
        DirectRoutes(_teapot, [("GET", Route("/t", _sync, methods=["GET"]))], _handler)
    with pytest.raises(ValueError, match="not a plain async endpoint"):
        DirectRoutes(_teapot, [("GET", Route("/t", _teapot, methods=["POST"]))], _handler)
