"""The ASGI application factory with a typed lifespan (no import-time singletons)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from paygate_server import cdc, observability, webhooks
from paygate_server.auth import Authenticator
from paygate_server.cards.keystore import CardKeyStore
from paygate_server.cards.resolved import FINGERPRINT_PURPOSE
from paygate_server.checkout import endpoints as checkout_endpoints
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.errors import ApiError
from paygate_server.extensions import Extension, check_order, check_provided, refresh_every
from paygate_server.heap import settle_after_startup
from paygate_server.http.api import error_response, json_response
from paygate_server.http.direct_routes import DirectRoutes
from paygate_server.http.middleware import RequestIdMiddleware, request_id_of
from paygate_server.intents import endpoints as intent_endpoints
from paygate_server.master_key import database_master_key
from paygate_server.private_files import private_dir
from paygate_server.processing import endpoints as processing_endpoints
from paygate_server.processing.connectors import Connector, connector_for_url
from paygate_server.processing.reconciler import Reconciler
from paygate_server.processing.service import ProcessingService
from paygate_server.processors import endpoints as processor_endpoints
from paygate_server.processors.registry import ProcessorRoutes
from paygate_server.readiness import readiness_response
from paygate_server.realtime import ChangeNotifier
from paygate_server.refunds import endpoints as refund_endpoints
from paygate_server.refunds.service import RefundService
from paygate_server.state import Gateway
from paygate_server.storage import Database, check_schema, create_database
from paygate_server.storage.availability import log_failure
from paygate_server.storage.nonces import prune_nonces
from paygate_server.vault import extension as vault_extension

__all__ = ["create_app", "create_app_from_env", "build_gateway", "core_gateway"]

log = logging.getLogger("paygate")

# Domains that plug into the gateway (paygate_server.extensions.Extension), in set-up order:
# each declares the gateway slots it requires and provides, and build_gateway refuses an
# order where one would run before what it needs.
EXTENSIONS: tuple[Extension, ...] = (
    cdc.extension,
    webhooks.extension,  # requires the relay
    observability.extension,
    vault_extension.extension,
)


async def build_gateway(settings: Settings, extensions: Sequence[Extension] = EXTENSIONS) -> Gateway:
    check_order(extensions, Gateway.slot_names())  # before anything is opened
    private_dir(settings.data_dir)  # 0700: the key file, the SQLite files, logs, archives
    db = create_database(settings.resolved_database_url, pool_size=settings.db_pool_size,
                         pool_timeout_s=settings.db_pool_timeout_s, connect_timeout_s=settings.db_connect_timeout_s,
                         command_timeout_s=settings.db_command_timeout_s or None,
                         idle_in_transaction_timeout_s=settings.db_idle_in_transaction_timeout_s or None,
                         session_url=settings.resolved_session_url)
    try:
        await check_schema(db)
        master = await database_master_key(settings, db)
    except Exception:
        await db.dispose()
        raise
    timeouts = {"connect_timeout": settings.processor_connect_timeout_s, "read_timeout": settings.processor_timeout_s}

    def wrap(connector: Connector) -> Connector:  # every connector, the default's and each account's
        for extension in extensions:
            connector = extension.wrap_connector(connector)
        return connector

    gateway = core_gateway(settings, db, master, connector_for_url(settings.processor_url, **timeouts), wrap)
    await gateway.card_keys.ensure_active_key()
    for extension in extensions:
        await extension.setup(gateway)
        check_provided(extension, gateway)
    return gateway


def core_gateway(settings: Settings, db: Database, master: MasterKey, connector: Connector,
                 wrap: Callable[[Connector], Connector] = lambda connector: connector) -> Gateway:
    """The gateway and its core services (processing, refunds, the reconciler) over an open
    database, with ``connector`` (wrapped by ``wrap``, as every account's connector is) as
    the default processor's; the checkout keys are not loaded yet. :func:`build_gateway`'s
    core, and all of the deterministic simulation's gateway (``paygate simulate``)."""
    timeouts = {"connect_timeout": settings.processor_connect_timeout_s, "read_timeout": settings.processor_timeout_s}
    authenticator = Authenticator(db, master, tolerance_s=settings.timestamp_tolerance_s,
                                  cache_ttl_s=settings.key_cache_ttl_s)
    notifier = ChangeNotifier(db, poll_interval_s=settings.change_poll_interval_s)
    card_keys = CardKeyStore(db, master, bits=settings.card_key_bits)
    connector = wrap(connector)  # once, before any service holds it
    processors = ProcessorRoutes(db, master, cache_ttl_s=settings.key_cache_ttl_s, wrap=wrap, **timeouts)
    gateway = Gateway(settings=settings, db=db, master_key=master, authenticator=authenticator,
                      notifier=notifier, card_keys=card_keys, connector=connector, processors=processors,
                      fingerprint_key=master.derive(FINGERPRINT_PURPOSE))
    gateway.processing = ProcessingService(gateway, connector)
    gateway.refunds = RefundService(gateway, connector)
    gateway.reconciler = Reconciler(gateway.payments, connector, settings, notifier, processors)
    return gateway


async def _housekeeping(gateway: Gateway) -> None:
    """Once a minute: prune expired nonces and idempotency keys (background work)."""
    while True:
        try:
            await prune_nonces(gateway.db)
            await gateway.payments.prune_keys(now_us() - gateway.settings.idempotency_ttl_s * 1_000_000)
        except asyncio.CancelledError:
            raise
        except Exception:
            log_failure(log, "housekeeping failed")
        await asyncio.sleep(60)


# How often every serving process re-reads the checkout keys: a rotation made elsewhere is
# published in its JWKS, and a retired key past its grace stops decrypting, within this.
CARD_KEY_REFRESH_S = 60.0


def _refresh_card_keys(gateway: Gateway) -> Coroutine[Any, Any, None]:
    """Not background work: an API-only process (``PAYGATE_RUN_BACKGROUND=0``) serves the
    JWKS and decrypts too, and without this would publish the key it started with for ever."""
    return refresh_every(lambda: CARD_KEY_REFRESH_S, "the checkout keys", gateway.card_keys.reload)


# The payment path's requests (SPEC §10: create, tokenize, process, status), matched first:
# Starlette tries the routes in order, a regex match each, and these were the 1st, 5th, 7th
# and ~20th. Their paths have no parameters and no other route matches them with their
# method (tests/server/http/test_route_order.py), so moving them first changes no answer.
PAYMENT_PATH = (("POST", "/api/v1/payment/intent"), ("POST", "/checkout/v1/tokens"),
                ("POST", "/api/v1/payment/process"), ("GET", "/api/v1/payment/status"))


def _payment_path_first(routes: list[BaseRoute]) -> list[BaseRoute]:
    def rank(route: BaseRoute) -> int:
        methods = getattr(route, "methods", None) or ()
        path = getattr(route, "path", None)
        return next((i for i, (method, hot) in enumerate(PAYMENT_PATH) if path == hot and method in methods),
                    len(PAYMENT_PATH))

    return sorted(routes, key=rank)  # stable: every other route keeps its order


def _payment_path(routes: list[BaseRoute]) -> list[tuple[str, Route]]:
    """The route the router picks for each request of :data:`PAYMENT_PATH`: the first that
    matches its path and method (there is no other, tests/server/http/test_route_order.py)."""
    return [(method, next(r for r in routes if isinstance(r, Route) and r.path == path and method in (r.methods or ())))
            for method, path in PAYMENT_PATH]


def _routes(extensions: Sequence[Extension]) -> list[BaseRoute]:
    from paygate_server.openapi import openapi_endpoint

    return _payment_path_first([
        *intent_endpoints.routes,
        *processing_endpoints.routes,
        *refund_endpoints.routes,
        *processor_endpoints.routes,
        *checkout_endpoints.routes,
        *(route for extension in extensions for route in extension.routes),
        Route("/api/v1/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/healthz", _healthz, methods=["GET"]),
        Route("/readyz", _readyz, methods=["GET"]),
    ])


async def _healthz(request: Request) -> Response:
    """Liveness: the worker serves. Never looks at the database (that is /readyz)."""
    return json_response(200, {"status": "ok"})


async def _readyz(request: Request) -> Response:
    """Readiness: the database answers (paygate_server/readiness.py); for load balancers."""
    gateway: Gateway = request.state.gateway
    return await readiness_response(gateway.readiness, request_id_of(request.scope))


def _allowed_methods(request: Request) -> str:
    """Every method the request's path is served with, for a 405's ``Allow`` (RFC 9110
    §15.5.6: a 405 must carry it). Starlette's own names only the first route of the path,
    and one path can be several routes (``/api/v1/webhooks``: GET and POST)."""
    routes = request.scope["app"].routes
    methods = {method for route in routes if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
               for method in route.methods or ()}
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "resource_missing", 405: "method_not_allowed"}.get(exc.status_code, "parameter_invalid")
    message = {404: "no such endpoint", 405: "method not allowed for this endpoint"}.get(
        exc.status_code, "bad request")
    headers = {"Allow": _allowed_methods(request)} if exc.status_code == 405 else None
    return error_response(ApiError(code, message, headers=headers), request_id_of(request.scope))


def create_app(settings: Settings | None = None, *, serving: bool = False,
               extensions: Sequence[Extension] = EXTENSIONS) -> Starlette:
    """The gateway. ``serving``: this process exists to serve it (``paygate serve``), so
    the garbage collector is tuned for that once startup is done (:mod:`.heap`)."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Gateway]]:
        gateway = await build_gateway(settings, extensions)
        await gateway.notifier.start()
        if serving:
            settle_after_startup()
        tasks = [asyncio.create_task(_refresh_card_keys(gateway), name="card-key-refresh")]
        for extension in extensions:
            for coro in extension.refresh_tasks(gateway):
                tasks.append(asyncio.create_task(coro))
        if settings.run_background:
            tasks.append(asyncio.create_task(_housekeeping(gateway), name="housekeeping"))
            tasks.append(asyncio.create_task(gateway.reconciler.run_forever(), name="reconciler"))
            for extension in extensions:
                for coro in extension.background_tasks(gateway):
                    tasks.append(asyncio.create_task(coro))
        try:
            yield {"gateway": gateway}
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await gateway.processing.drain(timeout_s=settings.processor_timeout_s)
            for extension in extensions:
                await extension.teardown(gateway)
            await gateway.notifier.stop()
            await gateway.readiness.close()
            await gateway.db.dispose()

    routes = _routes(extensions)
    # Innermost, so every request still passes the extensions' middleware and the request
    # id's; the payment path's then skips Starlette's inner layers (http/direct_routes.py).
    middleware = [*(m for extension in extensions for m in extension.middleware), Middleware(RequestIdMiddleware),
                  Middleware(DirectRoutes, routes=_payment_path(routes), http_error=_http_error)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: _http_error},
                    lifespan=lifespan)
    # A path with a trailing slash is an unknown route (404 resource_missing, docs/api.md),
    # not a 307 to a Location built from the request's own Host header.
    app.router.redirect_slashes = False
    return app


def create_app_from_env() -> Starlette:
    """For ``uvicorn --factory`` (several worker processes each build their own)."""
    return create_app(Settings.from_env(), serving=True)
