"""The payment path's four routes answered without Starlette's inner layers (pure ASGI).

A request reaches a Starlette endpoint through ``ExceptionMiddleware`` (a ``Request``, a
wrapped app and a wrapped ``send``), the router (its routes tried in order, a regex match
each) and the route's request wrapper (another ``Request``, wrapped app and wrapped
``send``): ~45 Python calls a request as ``docs/perf/count.py`` counts them, 3–4 requests
a payment (docs/perf/history.md, "Starlette's inner layers"). For the four requests of a
payment (SPEC §10: create, tokenize, process, status) that work decides nothing:

- their paths have no parameters, and no other route matches them with their method
  (tests/server/http/test_route_order.py), so the router would pick the same route: this
  looks it up by exact ``(method, path)``, and anything else — HEAD, another method (405),
  a trailing slash, a ``root_path`` — goes the usual way, answered as before;
- the endpoints are plain ``async def endpoint(request) -> Response`` functions with no
  route middleware; one that raises ``HTTPException`` is answered by the app's handler, as
  ``ExceptionMiddleware`` would; any other exception goes on to :class:`RequestIdMiddleware`
  (500 or 503 in the error shape), as it did through Starlette's layers, which re-raise it.

What the router puts in the scope and our code reads is set the same: ``route`` (the metrics
middleware's route template), ``endpoint`` and ``path_params``.
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DirectRoutes"]

HttpErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class DirectRoutes:
    def __init__(self, app: ASGIApp, routes: Iterable[tuple[str, Route]], http_error: HttpErrorHandler) -> None:
        self.app = app
        self._http_error = http_error
        self._direct: dict[tuple[str, str], tuple[Route, Callable[[Request], Awaitable[Response]]]] = {}
        for method, route in routes:
            if not inspect.iscoroutinefunction(route.endpoint) or method not in (route.methods or ()):
                raise ValueError(f"{method} {route.path}: not a plain async endpoint of that method")
            self._direct[(method, route.path)] = (route, route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        direct = (self._direct.get((scope["method"], scope["path"]))
                  if scope["type"] == "http" and not scope.get("root_path") else None)
        if direct is None:
            await self.app(scope, receive, send)
            return
        route, endpoint = direct
        scope["route"] = route
        scope["endpoint"] = endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except HTTPException as exc:
            response = await self._http_error(request, exc)
        await response(scope, receive, send)
