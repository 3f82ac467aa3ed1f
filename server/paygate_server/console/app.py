"""The console's ASGI application: its own process and port (``paygate console``), on the
gateway's database.

Its lifespan builds the gateway's services with :func:`paygate_server.app.build_gateway`,
so an operator's refund or capture runs through the very operations the API runs (same
exactly-once rules, same idempotency) — but starts none of the gateway's background work
(reconciler, relay, webhook deliveries, housekeeping): those belong to ``paygate serve``.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from paygate_server.app import EXTENSIONS, build_gateway
from paygate_server.config import Settings
from paygate_server.console.accounts import Accounts
from paygate_server.console.pages import PAGE_MODULES
from paygate_server.console.security import (
    CsrfTokens,
    HostCheck,
    SecurityHeaders,
    add_security_headers,
    check_console_origin,
    cookie_is_secure,
)
from paygate_server.console.sessions import SessionPolicy, Sessions
from paygate_server.console.web import NAV, Console, console_of, error_page, signed_in_of
from paygate_server.http.middleware import request_id_of
from paygate_server.readiness import readiness_response

__all__ = ["create_console_app", "create_console_app_from_env"]

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("paygate.console")


async def _healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def _readyz(request: Request) -> Response:
    """As the gateway's /readyz: the console's pages all read the database."""
    return await readiness_response(console_of(request).gateway.readiness, request_id_of(request.scope))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    signed_in = None
    if exc.status_code == 404:  # name the operator in the header if they are signed in
        signed_in = await signed_in_of(request)
    message = {404: "There is no such page in the console: use the navigation above, or go to the Overview.",
               405: "This page cannot be used that way: open it from the console's navigation."}.get(
        exc.status_code, "The request could not be understood: open the page from the console and try again.")
    return error_page(request, signed_in, exc.status_code, message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A bug or an outage (the database down): a readable page, the traceback in the log only."""
    log.error("console request failed", exc_info=exc)
    response = error_page(request, None, 500, "Something went wrong on the console's side: reload the page to see "
                                              "what was done, then try again; if it persists, the console's log "
                                              "says why.")
    add_security_headers(response.headers,
                         https=cookie_is_secure(request.url.scheme, console_of(request).settings.console_origin))
    return response


def _wrong_host(scope: Scope, status: int, message: str) -> Response:
    """HostCheck's refusal: the console's error page, nobody signed in (the request is not
    looked at further, its cookie least of all)."""
    return error_page(Request(scope), None, status, message)


def _routes(modules: Sequence[str]) -> list[BaseRoute]:
    routes: list[BaseRoute] = [Route("/healthz", _healthz, methods=["GET"]),
                               Route("/readyz", _readyz, methods=["GET"]),
                               Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    for name in modules:
        routes.extend(importlib.import_module(name).routes)
    return routes


def create_console_app(settings: Settings | None = None, *, page_modules: Sequence[str] = PAGE_MODULES) -> Starlette:
    settings = settings or Settings.from_env()
    settings = replace(settings, run_background=False, console_origin=check_console_origin(settings.console_origin))
    routes = _routes(page_modules)
    routed = {route.path for route in routes if isinstance(route, Route)}
    nav = tuple(item for item in NAV if item.path in routed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Console]]:
        gateway = await build_gateway(settings)
        console = Console(gateway=gateway, settings=settings, accounts=Accounts(gateway.db),
                          sessions=Sessions(gateway.db, SessionPolicy.from_settings(settings)),
                          csrf=CsrfTokens(gateway.master_key), nav=nav)
        await console.accounts.prepare()
        try:
            yield {"console": console}
        finally:
            await gateway.processing.drain(timeout_s=settings.processor_timeout_s)
            for extension in EXTENSIONS:  # as the gateway's app tears them down
                await extension.teardown(gateway)
            await gateway.readiness.close()
            await gateway.db.dispose()

    # SecurityHeaders outermost: HostCheck's refusals carry the headers too.
    middleware = [Middleware(SecurityHeaders, configured_origin=settings.console_origin),
                  Middleware(HostCheck, configured_origin=settings.console_origin, refusal=_wrong_host)]
    return Starlette(routes=routes, middleware=middleware,
                     exception_handlers={HTTPException: _http_error, Exception: _unexpected}, lifespan=lifespan)


def create_console_app_from_env() -> Starlette:
    """For ``uvicorn --factory`` (``paygate console``)."""
    return create_console_app(Settings.from_env())
