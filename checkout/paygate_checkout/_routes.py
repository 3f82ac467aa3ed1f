"""Starlette routes for the checkout's static files and its frame page."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ._render import (
    DEFAULT_BASE_PATH,
    STATIC_FILES,
    FrameContext,
    render_frame,
    render_frame_error,
    static_dir,
    static_file_version,
)
from ._security import frame_security_headers, static_security_headers

__all__ = ["FrameUnavailable", "build_frame_route", "checkout_static_routes", "serve_frame"]

_MAX_CLIENT_SECRET_CHARS: Final = 256
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
# checkout.js is loaded by a fixed URL from merchant pages: a short cache lets fixes reach
# them quickly.
_SHORT: Final = "public, max-age=300"


class FrameUnavailable(Exception):
    """Raise from ``get_context`` to show a message in the frame instead of the form.

    For a checkout that exists but cannot take a card (already paid, canceled, too many
    attempts): the page is framable by ``allowed_origins``, so the customer sees
    ``message`` inside the merchant's page. Never put card data or secrets in it.
    """

    def __init__(
        self, message: str, *, allowed_origins: Sequence[str] = (), status_code: int = 409
    ) -> None:
        super().__init__(message)
        self.message = message
        self.allowed_origins = tuple(allowed_origins)
        self.status_code = status_code


def _static_endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
    body = (static_dir() / name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    version = static_file_version(name)
    media_type = STATIC_FILES[name]
    cross_origin = name == "checkout.js"

    async def endpoint(request: Request) -> Response:
        headers = static_security_headers(cross_origin=cross_origin)
        headers["ETag"] = etag
        headers["Cache-Control"] = (
            _IMMUTABLE if not cross_origin and request.query_params.get("v") == version else _SHORT
        )
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return endpoint


def checkout_static_routes(base_path: str = DEFAULT_BASE_PATH) -> list[BaseRoute]:
    """``GET {base}/checkout.js`` and ``GET {base}/static/<file>`` for the frame's assets.

    Only the files in ``STATIC_FILES`` are served, from memory, with ``nosniff`` and an
    ETag. checkout.js may be loaded cross-origin (it is a ``<script>`` on merchant pages).
    """
    base = base_path.rstrip("/")
    routes: list[BaseRoute] = [
        Route(f"{base}/checkout.js", _static_endpoint("checkout.js"), methods=["GET", "HEAD"])
    ]
    for name in STATIC_FILES:
        if name != "checkout.js":
            routes.append(
                Route(f"{base}/static/{name}", _static_endpoint(name), methods=["GET", "HEAD"])
            )
    return routes


def _error_page(
    message: str, status_code: int, allowed_origins: Sequence[str], base_path: str
) -> HTMLResponse:
    return HTMLResponse(
        render_frame_error(message, base_path=base_path),
        status_code=status_code,
        headers=frame_security_headers(allowed_origins),
    )


async def serve_frame(
    request: Request,
    get_context: Callable[[str], Awaitable[FrameContext | None]],
    *,
    base_path: str = DEFAULT_BASE_PATH,
) -> Response:
    """The response of ``GET {base}/frame?clientSecret=…[&parentOrigin=…]`` (see
    :func:`build_frame_route`), for a route written by hand that needs the request to
    look the checkout up (e.g. the gateway's state on ``request.state``)."""
    base = base_path.rstrip("/")
    secret = request.query_params.get("clientSecret", "")
    if not secret or len(secret) > _MAX_CLIENT_SECRET_CHARS:
        return _error_page("This checkout link is not valid.", 404, (), base)
    try:
        context = await get_context(secret)
    except FrameUnavailable as unavailable:
        return _error_page(
            unavailable.message, unavailable.status_code, unavailable.allowed_origins, base
        )
    if context is None:
        return _error_page("This checkout link is not valid.", 404, (), base)
    try:
        html = render_frame(
            context, parent_origin=request.query_params.get("parentOrigin"), base_path=base
        )
    except ValueError:
        # The merchant has no registered origin: nobody could embed the form.
        return _error_page("This checkout cannot be embedded.", 409, (), base)
    return HTMLResponse(html, headers=frame_security_headers(context.allowed_origins))


def build_frame_route(
    get_context: Callable[[str], Awaitable[FrameContext | None]],
    *,
    base_path: str = DEFAULT_BASE_PATH,
) -> Route:
    """``GET {base}/frame?clientSecret=…[&parentOrigin=…]``: the card form page.

    ``get_context(client_secret)`` looks the checkout up (the intent's amount and currency,
    the merchant's name and registered origins) and returns a :class:`FrameContext`, or
    ``None`` when the secret matches nothing — then a 404 page that no one may frame
    (``frame-ancestors 'none'``). It may raise :class:`FrameUnavailable` to show a message
    instead of the form. The page is served with :func:`frame_security_headers`.
    """
    base = base_path.rstrip("/")

    async def frame(request: Request) -> Response:
        return await serve_frame(request, get_context, base_path=base)

    return Route(f"{base}/frame", frame, methods=["GET", "HEAD"])
