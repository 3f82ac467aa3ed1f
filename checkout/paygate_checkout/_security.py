"""Origins and the security headers of the checkout frame."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "choose_merchant_origin",
    "frame_security_headers",
    "is_valid_origin",
    "normalize_origin",
    "static_security_headers",
]

# scheme://host[:port], nothing else: no path, no trailing slash, no wildcard, no quote,
# semicolon or whitespace that could break out of a CSP directive. IPv6 literals allowed.
_ORIGIN: Final = re.compile(
    r"(?P<scheme>https?)://"
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def is_valid_origin(origin: str) -> bool:
    """Whether ``origin`` is a serialized web origin, as browsers write ``event.origin``.

    Lower case ``http(s)://host[:port]``, without the scheme's default port, path or
    trailing slash. :func:`normalize_origin` turns what a merchant typed into one.
    """
    match = _ORIGIN.fullmatch(origin)
    if match is None:
        return False
    port = match.group("port")
    if port is None:
        return True
    return 0 < int(port) <= 65535 and int(port) != _DEFAULT_PORTS[match.group("scheme")]


def normalize_origin(url: str) -> str:
    """``"HTTPS://Shop.Example:443/"`` → ``"https://shop.example"``; ValueError if not an origin.

    For registering a merchant's allowed origins (``paygate merchants create --origin``).
    A path other than ``/``, a query, a fragment or credentials are refused rather than
    dropped: they suggest the operator meant something else.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or parts.path not in ("", "/"):
        raise ValueError(f"not an http(s) origin: {url!r}")
    if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        raise ValueError(f"not an http(s) origin: {url!r}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"not an http(s) origin: {url!r}") from None
    if not host:
        raise ValueError(f"not an http(s) origin: {url!r}")
    if ":" in host:
        host = f"[{host}]"
    elif not host.isascii():
        # Browsers serialize internationalized host names as punycode (A-labels).
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not an http(s) origin: {url!r}") from None
    origin = f"{scheme}://{host}"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        origin += f":{port}"
    if not is_valid_origin(origin):
        raise ValueError(f"not an http(s) origin: {url!r}")
    return origin


def _checked(origins: Iterable[str]) -> list[str]:
    result = []
    for origin in origins:
        if not isinstance(origin, str) or not is_valid_origin(origin):
            raise ValueError(f"not a valid origin: {origin!r}")
        if origin not in result:
            result.append(origin)
    return result


def frame_security_headers(allowed_origins: Sequence[str]) -> dict[str, str]:
    """Response headers for ``GET /checkout/v1/frame``.

    ``frame-ancestors`` lists exactly the merchant's registered origins (``'none'`` if
    there are none), which supersedes ``X-Frame-Options`` — deliberately not sent, since
    ``ALLOW-FROM`` is dead and ``SAMEORIGIN`` would block the merchant. Raises
    :class:`ValueError` for anything that is not a plain origin, so nothing can be
    injected into the policy.
    """
    origins = _checked(allowed_origins)
    ancestors = " ".join(origins) if origins else "'none'"
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
            f"frame-ancestors {ancestors}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }


def static_security_headers(*, cross_origin: bool) -> dict[str, str]:
    """Headers for the checkout's static files.

    ``checkout.js`` is loaded by merchant pages (``cross_origin=True``); the frame's own
    scripts and styles only by the frame.
    """
    return {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "cross-origin" if cross_origin else "same-origin",
    }


def choose_merchant_origin(allowed_origins: Sequence[str], requested: str | None) -> str | None:
    """The origin the frame posts its messages to.

    ``requested`` is what checkout.js says the parent page's origin is (the frame's
    ``parentOrigin`` query parameter). It is used only if it is one of the merchant's
    registered origins; otherwise the first registered origin. A wrong claim is harmless:
    ``frame-ancestors`` decides who may embed the frame, and ``postMessage`` to an origin
    that is not the parent's is dropped by the browser. ``None`` when the merchant has no
    registered origin (the frame cannot be embedded at all then).
    """
    origins = _checked(allowed_origins)
    if requested is not None and requested in origins:
        return requested
    return origins[0] if origins else None
