"""Rendering the checkout frame page (Jinja2, autoescaped) and locating package files."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import jinja2

from ._money import format_amount
from ._security import _checked, choose_merchant_origin

__all__ = [
    "DEFAULT_BASE_PATH",
    "STATIC_FILES",
    "FrameContext",
    "render_frame",
    "render_frame_error",
    "static_dir",
    "static_file_version",
    "templates_dir",
]

_PACKAGE_DIR: Final = Path(__file__).resolve().parent
DEFAULT_BASE_PATH: Final = "/checkout/v1"

#: The static files the checkout serves, and their media types. Nothing else in
#: ``static/`` is served (no directory listing, no traversal surface).
STATIC_FILES: Final[dict[str, str]] = {
    "checkout.js": "text/javascript; charset=utf-8",
    "card.js": "text/javascript; charset=utf-8",
    "jwe.js": "text/javascript; charset=utf-8",
    "frame.js": "text/javascript; charset=utf-8",
    "frame.css": "text/css; charset=utf-8",
}


def templates_dir() -> Path:
    """The folder of the Jinja2 templates (``frame.html``, ``frame_error.html``)."""
    return _PACKAGE_DIR / "templates"


def static_dir() -> Path:
    """The folder of the static files (``checkout.js``, the frame's scripts and CSS)."""
    return _PACKAGE_DIR / "static"


@functools.cache
def static_file_version(name: str) -> str:
    """A short content hash of a static file, appended as ``?v=`` to bust caches on upgrade."""
    if name not in STATIC_FILES:
        raise KeyError(name)
    return hashlib.sha256((static_dir() / name).read_bytes()).hexdigest()[:12]


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class FrameContext:
    """What the frame page needs to know about one checkout (one payment intent).

    ``allowed_origins`` are the merchant's registered origins (they become
    ``frame-ancestors``); ``merchant_origin`` is the one the frame posts to — ``None``
    picks via :func:`choose_merchant_origin` from ``parent_origin`` (what checkout.js
    claims), else the first allowed origin. ``client_secret`` is echoed into the page
    (the frame sends it back with the encrypted card): never log the rendered HTML.
    """

    merchant_name: str
    amount: int
    currency: str
    client_secret: str = field(repr=False)
    allowed_origins: tuple[str, ...]
    merchant_origin: str | None = None
    description: str | None = None
    test_mode: bool = False
    # Manual capture: the card is authorized now and charged later; the frame says so.
    authorize_only: bool = False

    def resolved_merchant_origin(self, parent_origin: str | None = None) -> str:
        """The postMessage target; ValueError if it is not one of ``allowed_origins``."""
        allowed = _checked(self.allowed_origins)
        if self.merchant_origin is not None:
            if self.merchant_origin not in allowed:
                raise ValueError("merchant_origin must be one of allowed_origins")
            return self.merchant_origin
        chosen = choose_merchant_origin(allowed, parent_origin)
        if chosen is None:
            raise ValueError("the merchant has no allowed origin: the frame cannot be embedded")
        return chosen


def _asset_urls(base_path: str) -> dict[str, str]:
    base = base_path.rstrip("/")
    return {
        name.replace(".", "_"): f"{base}/static/{name}?v={static_file_version(name)}"
        for name in STATIC_FILES
        if name != "checkout.js"
    }


def render_frame(
    context: FrameContext,
    *,
    parent_origin: str | None = None,
    base_path: str = DEFAULT_BASE_PATH,
) -> str:
    """The frame page's HTML. Pair it with ``frame_security_headers(context.allowed_origins)``.

    ``base_path`` is where the checkout routes are mounted (assets, keys, tokens).

    Page data reaches the scripts through a ``<script type="application/json">`` block
    (``tojson`` escapes ``<``, ``>``, ``&`` and ``'``), so the page needs no inline script.
    """
    merchant_origin = context.resolved_merchant_origin(parent_origin)
    base = base_path.rstrip("/")
    amount_label = format_amount(context.amount, context.currency)
    config: dict[str, Any] = {
        "clientSecret": context.client_secret,
        "merchantOrigin": merchant_origin,
        "keysUrl": f"{base}/keys",
        "tokensUrl": f"{base}/tokens",
        "submitLabel": f"{'Authorize' if context.authorize_only else 'Pay'} {amount_label}",
    }
    return _environment().get_template("frame.html").render(
        merchant_name=context.merchant_name,
        amount_label=amount_label,
        currency=context.currency.upper(),
        description=context.description,
        test_mode=context.test_mode,
        authorize_only=context.authorize_only,
        config=config,
        assets=_asset_urls(base),
    )


def render_frame_error(message: str, *, base_path: str = DEFAULT_BASE_PATH) -> str:
    """A small page for a frame that cannot be shown (unknown or finished checkout)."""
    return _environment().get_template("frame_error.html").render(
        message=message, assets=_asset_urls(base_path)
    )
