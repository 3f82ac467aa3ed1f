"""The mountable Starlette routes: static files and the frame page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from paygate_checkout import (
    FrameContext,
    FrameUnavailable,
    build_frame_route,
    checkout_static_routes,
    static_dir,
)

ORIGINS = ("https://shop.example", "https://www.shop.example")


async def _lookup(client_secret: str) -> FrameContext | None:
    if client_secret == "pi_1_secret_ok":
        return FrameContext(
            merchant_name="Acme",
            amount=500,
            currency="EUR",
            client_secret=client_secret,
            allowed_origins=ORIGINS,
        )
    if client_secret == "pi_1_secret_paid":
        raise FrameUnavailable("This order has already been paid.", allowed_origins=ORIGINS)
    if client_secret == "pi_1_secret_nowhere":
        return FrameContext(
            merchant_name="Acme", amount=500, currency="EUR",
            client_secret=client_secret, allowed_origins=(),
        )
    return None


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=[*checkout_static_routes(), build_frame_route(_lookup)])
    async with _client(app) as test_client:
        yield test_client


async def test_checkout_js(client: httpx.AsyncClient) -> None:
    response = await client.get("/checkout/v1/checkout.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.content == (static_dir() / "checkout.js").read_bytes()


async def test_frame_assets_and_caching(client: httpx.AsyncClient) -> None:
    page = (await client.get("/checkout/v1/frame", params={"clientSecret": "pi_1_secret_ok"})).text
    css_url = page.split('href="', 1)[1].split('"', 1)[0]
    assert css_url.startswith("/checkout/v1/static/frame.css?v=")
    response = await client.get(css_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["cross-origin-resource-policy"] == "same-origin"
    stale = await client.get("/checkout/v1/static/frame.css?v=old")
    assert stale.headers["cache-control"] == "public, max-age=300"
    again = await client.get(css_url, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for name in ("card.js", "jwe.js", "frame.js"):
        assert (await client.get(f"/checkout/v1/static/{name}")).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/checkout/v1/static/../__init__.py", "/checkout/v1/static/_routes.py",
     "/checkout/v1/static/", "/checkout/v1/static/frame.html", "/checkout/v1/static/checkout.js"],
)
async def test_nothing_else_is_served(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_frame_page(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/checkout/v1/frame",
        params={"clientSecret": "pi_1_secret_ok", "parentOrigin": "https://www.shop.example"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors https://shop.example https://www.shop.example;" in csp
    assert "script-src 'self'" in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in response.headers
    assert "€5.00" in response.text
    assert '"merchantOrigin": "https://www.shop.example"' in response.text


@pytest.mark.parametrize(
    "params",
    [{}, {"clientSecret": ""}, {"clientSecret": "pi_unknown"}, {"clientSecret": "x" * 300}],
)
async def test_unknown_checkout_cannot_be_framed(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await client.get("/checkout/v1/frame", params=params)
    assert response.status_code == 404
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert 'id="pg-form"' not in response.text


async def test_unavailable_checkout_shows_a_message_to_the_merchant_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/checkout/v1/frame", params={"clientSecret": "pi_1_secret_paid"})
    assert response.status_code == 409
    assert "This order has already been paid." in response.text
    assert "frame-ancestors https://shop.example https://www.shop.example;" in (
        response.headers["content-security-policy"]
    )
    assert 'id="pg-form"' not in response.text


async def test_merchant_without_origins(client: httpx.AsyncClient) -> None:
    response = await client.get("/checkout/v1/frame", params={"clientSecret": "pi_1_secret_nowhere"})
    assert response.status_code == 409
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_custom_base_path() -> None:
    app = Starlette(
        routes=[*checkout_static_routes("/pay/"), build_frame_route(_lookup, base_path="/pay")]
    )
    async with _client(app) as client:
        assert (await client.get("/pay/checkout.js")).status_code == 200
        page = (await client.get("/pay/frame", params={"clientSecret": "pi_1_secret_ok"})).text
        assert "/pay/static/frame.js?v=" in page
        assert '"tokensUrl": "/pay/tokens"' in page
