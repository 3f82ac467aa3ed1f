"""The console's defences in depth: CSRF tokens, the ``Origin`` check, security headers
and the session cookie's attributes.

* **CSRF**: every state-changing form carries ``csrf`` = HMAC-SHA256 of the session id
  under a key derived from the master key (``MasterKey.derive``). Nothing is stored: the
  token is valid exactly as long as its session. The login form has no session yet; it is
  protected by the ``Origin`` check alone (a forged login could only sign the victim in).
* **Origin**: every POST must carry an ``Origin`` equal to the console's own (the
  configured ``PAYGATE_CONSOLE_ORIGIN``, else the origin the request was addressed to). A
  missing ``Origin`` is refused too, with no ``Referer`` fallback: every browser the console
  supports sends ``Origin`` on a form POST, and a client that does not is not a browser
  following a page of ours.
* **Referrer-Policy** is ``same-origin``, not ``no-referrer``: under ``no-referrer``
  browsers send ``Origin: null`` even on a same-origin form POST (Fetch, "serializing a
  request origin"), which would make the ``Origin`` check refuse the console's own forms.
  ``same-origin`` still sends nothing to any other site.
* **Cookie**: ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, and ``Secure`` when the
  console is reached over https (the request's scheme or the configured origin's).
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate_server.crypto import MasterKey

__all__ = ["CONTENT_SECURITY_POLICY", "CSRF_FIELD", "CsrfTokens", "SecurityHeaders", "add_security_headers", "check_console_origin",
           "cookie_is_secure",
           "expected_origin", "origin_allowed"]

CSRF_PURPOSE = "console-csrf"
CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class CsrfTokens:
    def __init__(self, master: MasterKey) -> None:
        self._key = master.derive(CSRF_PURPOSE)

    def token(self, session_id: bytes) -> str:
        return hmac.new(self._key, session_id, hashlib.sha256).hexdigest()

    def valid(self, session_id: bytes, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.token(session_id), token)


def check_console_origin(configured: str | None) -> None:
    """A configured origin must be ``scheme://host[:port]`` (what browsers send), or every
    form would be refused; ValueError says what is wrong."""
    if not configured:
        return
    parts = urlsplit(configured)
    if (parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/")
            or parts.query or parts.fragment or "@" in parts.netloc):
        raise ValueError(f"PAYGATE_CONSOLE_ORIGIN must be an origin like https://console.example.com, "
                         f"not {configured[:100]!r}")


def expected_origin(scheme: str, host: str | None, configured: str | None) -> str | None:
    """The console's origin: the configured one, else this request's (None: no Host)."""
    if configured:
        return configured.rstrip("/")
    return f"{scheme}://{host}" if host else None


def origin_allowed(headers: Mapping[str, str], expected: str | None) -> bool:
    origin = headers.get("origin")
    return origin is not None and expected is not None and origin == expected


def cookie_is_secure(scheme: str, configured: str | None) -> bool:
    return scheme == "https" or bool(configured and configured.startswith("https://"))


def add_security_headers(headers: MutableHeaders, *, static: bool = False) -> None:
    """The headers above (and no-store unless ``static``). Also used by the error handler
    of last resort, which Starlette runs outside every middleware."""
    for name, value in _HEADERS.items():
        headers[name] = value
    if not static:
        headers["cache-control"] = "no-store"


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response; ``Cache-Control:
    no-store`` on all but the static files served (pages show who is signed in and
    payments; so does the 404 page of a missing static file)."""

    def __init__(self, app: ASGIApp, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(self.static_prefix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A static file, not the error page answering a missing one (it names the
                # operator and carries their CSRF token): that is a page like any other.
                add_security_headers(MutableHeaders(scope=message), static=static and message["status"] < 400)
            await send(message)

        await self.app(scope, receive, send_with_headers)
