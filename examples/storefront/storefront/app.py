"""``create_app(config)``: the storefront as a Starlette application."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import paygate
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from storefront import admin_routes, hold_routes, shop_routes, webhook_routes
from storefront.config import StorefrontConfig
from storefront.origin import OriginGuard
from storefront.web import Shop, render

__all__ = ["create_app", "create_app_from_env"]

STATIC = Path(__file__).parent / "static"


def create_app(config: StorefrontConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> Starlette:
    """``transport`` replaces the network under the SDK (tests pass an ``httpx.MockTransport``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with paygate.AsyncClient(config.api_key, config.signing_secret, config.gateway_url,
                                       transport=transport, user_agent="tidewater-storefront/1") as client:
            app.state.shop = Shop.build(config, client)
            yield

    async def not_found(request: Request, exc: Exception) -> Response:
        return render(request, "not_found.html", status_code=404)

    return Starlette(
        routes=[
            *shop_routes.routes,
            *webhook_routes.routes,
            *admin_routes.routes,
            *hold_routes.routes,
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found},
        # Outermost, so a cross-site POST is refused before anything reads its body.
        middleware=[Middleware(OriginGuard, exempt_paths=webhook_routes.CROSS_SITE_PATHS)],
    )


def create_app_from_env() -> Starlette:
    return create_app(StorefrontConfig.from_env())
