"""Cross-site request refusal for every state-changing request, in one place.

A POST (or PUT, PATCH, DELETE) is served only when the browser says it comes from this
shop: its ``Origin`` — or, when a browser sends none, the origin of its ``Referer`` — must
equal the shop's own origin (scheme, host and port). A request that names neither is
refused too: every browser sends ``Origin`` on a cross-site POST and on a same-origin form
POST, so only non-browser clients and stripped or privacy-filtered requests lack both, and
"no proof" must not pass for "same site" (``SameSite`` cookies alone do not cover the cart,
whose cookie is ``Lax``, nor the login form, which has no cookie yet).

The guard is middleware so that no route can forget it. The one exception is the webhook
receiver, which the gateway calls server to server and which proves itself with a
signature instead (``exempt_paths``).
"""
from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["OriginGuard", "same_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REFUSED = "Cross-site request refused."


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def same_origin(request: Request) -> bool:
    """True when ``Origin`` (else ``Referer``) names this shop. ``Origin: null`` (sandboxed
    frames, some redirects) is never this shop."""
    claimed = request.headers.get("origin")
    if claimed is None:
        referer = request.headers.get("referer")
        if referer is None:
            return False
        claimed = referer
    host = request.headers.get("host")
    if not host:
        return False
    # The Host header is what the browser connected to: a cross-site page cannot set it.
    return _origin_of(claimed) == f"{request.url.scheme}://{host.lower()}"


class OriginGuard:
    """ASGI middleware: unsafe methods must come from the shop's own pages."""

    def __init__(self, app: ASGIApp, *, exempt_paths: Collection[str] = ()) -> None:
        self.app = app
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in SAFE_METHODS
                or scope["path"] in self.exempt_paths):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if same_origin(request):
            await self.app(scope, receive, send)
            return
        response: Response
        if "json" in request.headers.get("content-type", ""):
            response = JSONResponse({"error": {"message": REFUSED}}, status_code=403)
        else:
            response = PlainTextResponse(REFUSED, status_code=403)
        await response(scope, receive, send)
