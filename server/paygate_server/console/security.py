"""The console's defences in depth: CSRF tokens, the ``Origin`` check, security headers
and the session cookie's attributes.

* **CSRF**: every state-changing form carries ``csrf`` = HMAC-SHA256 of the session id
  under a key derived from the master key (``MasterKey.derive``). Nothing is stored: the
  token is valid exactly as long as its session. The login form has no session yet: its
  token is the HMAC of a random id the login page puts in a cookie of its own
  (``paygate_console_login``, the session cookie's attributes; a double-submit bound to
  the browser), so a login form posted from anywhere but the console's own page, to that
  browser, is refused as every other form is (a forged login signs the victim in to the
  attacker's account: "login CSRF").
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
  console is reached over https (the request's scheme or the configured origin's). A
  Secure cookie is named with the ``__Host-`` prefix (:func:`session_cookie_name`): the
  browser then keeps it only from https, for this exact host, never from a sibling
  sub-domain or a plain-http page that would set a cookie of the same name (cookie
  tossing, session fixation). Over plain http (the demo, loopback) the prefix would make
  the browser drop the cookie, so it is named without it.
* **Host** (:class:`HostCheck`): a request whose ``Host`` is not a name the console
  serves is refused before any page runs — DNS rebinding (``paygate_server.http.hosts``).
  The names served: IP literals, ``localhost``, and the configured origin's host.
* **HSTS**: over https, ``Strict-Transport-Security: max-age=31536000`` (a year; no
  ``includeSubDomains``: the console's name says nothing about its siblings' TLS).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate_server.console.sessions import COOKIE_NAME
from paygate_server.crypto import MasterKey
from paygate_server.http.hosts import (
    HostName,
    host_names_in,
    parse_host,
    safe_without_configuration,
)
from paygate_server.letter_digests import as_letters

__all__ = ["CONTENT_SECURITY_POLICY", "CSRF_FIELD", "HSTS", "SECURE_SESSION_COOKIE", "CsrfTokens",
           "HostCheck", "SecurityHeaders", "add_security_headers", "check_console_origin", "console_serves_host",
           "cookie_is_secure", "expected_origin", "login_cookie_name", "origin_allowed", "session_cookie_name"]

log = logging.getLogger("paygate.console")

CSRF_PURPOSE = "console-csrf"
CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    # Another site's window that opens the console keeps no handle on it (and the console
    # none on its opener), and no other site may load a console response as an image,
    # script or the like (a JSON read through a side channel).
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
HSTS = "max-age=31536000"
SECURE_SESSION_COOKIE = "__Host-" + COOKIE_NAME
LOGIN_COOKIE_NAME = COOKIE_NAME + "_login"
# Liveness and readiness probes address the process by whatever name their platform
# uses (a container's service name, a pod's address); they say "ok" or "not ready",
# nothing a rebinding page could use, so they answer under any Host.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


class CsrfTokens:
    """A form's token: HMAC-SHA256 of the session id — or, for the login form (no session
    yet), of the random id in the browser's login cookie, under its own label so neither
    kind of token is ever valid as the other."""

    def __init__(self, master: MasterKey) -> None:
        self._key = master.derive(CSRF_PURPOSE)

    def token(self, session_id: bytes) -> str:
        # In letters, not hex: about 1.5 % of hex HMACs hold a Luhn-valid run of digits, and
        # every form holding a card number is refused (web.read_form) — those sessions could
        # send no form at all (letter_digests.py).
        return as_letters(hmac.new(self._key, session_id, hashlib.sha256).hexdigest())

    def login_token(self, login_id: bytes) -> str:
        return self.token(b"login\x00" + login_id)

    def valid(self, session_id: bytes, token: str | None) -> bool:
        return _same(self.token(session_id), token)

    def valid_login(self, login_id: bytes, token: str | None) -> bool:
        return _same(self.login_token(login_id), token)


def _same(expected: str, token: str | None) -> bool:
    # As bytes: compare_digest refuses str holding non-ASCII (a TypeError, a 500), and a
    # posted token is whatever the client typed.
    return token is not None and hmac.compare_digest(expected.encode(), token.encode())


_DEFAULT_PORTS = {"http": 80, "https": 443}


def check_console_origin(configured: str | None) -> str | None:
    """A configured origin must be ``scheme://host[:port]``; returned as browsers send
    ``Origin`` — lower case, no default port, no trailing slash — since the ``Origin``
    check compares strings and the https test reads the scheme (``HTTPS://Console.example.com:443/``
    would otherwise refuse every form and leave the cookie without ``Secure``). ValueError
    says what is wrong."""
    if not configured:
        return None
    refused = ValueError(f"PAYGATE_CONSOLE_ORIGIN must be an origin like https://console.example.com, "
                         f"not {configured[:100]!r}")
    try:  # (urlsplit refuses "http://[::1" itself: once "paygate: Invalid IPv6 URL", naming nothing)
        parts = urlsplit(configured.strip())
        port = parts.port
    except ValueError:
        raise refused from None
    if (parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/")
            or parts.query or parts.fragment or "@" in parts.netloc):
        raise refused
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}")


def expected_origin(scheme: str, host: str | None, configured: str | None) -> str | None:
    """The console's origin: the configured one, else this request's (None: no Host)."""
    if configured:
        return configured.rstrip("/")
    return f"{scheme}://{host}" if host else None


def origin_allowed(headers: Mapping[str, str], expected: str | None) -> bool:
    origin = headers.get("origin")
    return origin is not None and expected is not None and origin == expected


def cookie_is_secure(scheme: str, configured: str | None) -> bool:
    """Whether the console is reached over https: this request's scheme, or the configured
    origin's (a TLS-terminating proxy in front speaks plain http to the console)."""
    return scheme == "https" or bool(configured and configured.startswith("https://"))


def session_cookie_name(secure: bool) -> str:
    return SECURE_SESSION_COOKIE if secure else COOKIE_NAME


def login_cookie_name(secure: bool) -> str:
    """The login form's cookie (its CSRF token's other half), prefixed as the session's."""
    return ("__Host-" if secure else "") + LOGIN_COOKIE_NAME


def console_serves_host(host: HostName, configured: str | None) -> bool:
    """An IP literal, ``localhost``, or the configured origin's host name. The port is not
    compared: a rebinding page cannot choose the name, whatever the port, and proxies
    differ in whether they pass the port on (nginx's ``$host`` drops it)."""
    return safe_without_configuration(host) or (configured is not None and
                                                 urlsplit(configured).hostname == host.name)


def add_security_headers(headers: MutableHeaders, *, static: bool = False, https: bool = False) -> None:
    """The headers above (no-store unless ``static``, HSTS if ``https``). Also used by the
    error handler of last resort, which Starlette runs outside every middleware."""
    for name, value in _HEADERS.items():
        headers[name] = value
    if not static:
        headers["cache-control"] = "no-store"
    if https:
        headers["strict-transport-security"] = HSTS


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response; ``Cache-Control:
    no-store`` on all but the static files served (pages show who is signed in and
    payments; so does the 404 page of a missing static file)."""

    def __init__(self, app: ASGIApp, configured_origin: str | None = None, static_prefix: str = "/static/") -> None:
        self.app = app
        self.configured_origin = configured_origin
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
                add_security_headers(MutableHeaders(scope=message), static=static and message["status"] < 400,
                                     https=cookie_is_secure(scope["scheme"], self.configured_origin))
            await send(message)

        await self.app(scope, receive, send_with_headers)


Refusal = Callable[[Scope, int, str], Response]
UNREADABLE_HOST = ("This request names no host, or names it in a way the console cannot read (its Host header): "
                   "open the console from its address.")
UNKNOWN_HOST = ("The console is not served under the name {name}: open it at the address you were given. Whoever "
                "runs it declares that name with PAYGATE_CONSOLE_ORIGIN (docs/operations.md, Console).")


class HostCheck:
    """Pure ASGI middleware: a request must name, in one ``Host`` field, a host the console
    serves (:func:`console_serves_host`); otherwise ``refusal`` answers it — 400 when the
    field is missing, repeated or unreadable (RFC 9112 §3.2), 421 Misdirected Request for
    a name the console does not serve — and no page runs. Probes are exempt (PROBE_PATHS)."""

    def __init__(self, app: ASGIApp, configured_origin: str | None, refusal: Refusal) -> None:
        self.app = app
        self.configured_origin = configured_origin
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        fields = host_names_in(scope["headers"])
        host = parse_host(fields[0]) if len(fields) == 1 else None
        if host is None:
            await self.refusal(scope, 400, UNREADABLE_HOST)(scope, receive, send)
            return
        if not console_serves_host(host, self.configured_origin):
            log.info("console request for a host it does not serve", extra={"fields": {"host": host.name[:100]}})
            await self.refusal(scope, 421, UNKNOWN_HOST.format(name=host.name[:100]))(scope, receive, send)
            return
        await self.app(scope, receive, send)
