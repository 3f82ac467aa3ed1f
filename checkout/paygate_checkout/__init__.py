"""paygate's hosted checkout: the embeddable, tokenizing card form (SPEC §5).

What is in the package
    ``static/checkout.js``  merchant pages include it: ``Paygate.mount(selector, {...})``.
    ``static/card.js``      card number / expiry / CVC rules (mirrors ``paygate_server.cards.pan``).
    ``static/jwe.js``       WebCrypto JWE (``RSA-OAEP-256`` / ``A256GCM``, with ``kid``).
    ``static/frame.js``     the form's behaviour; ``static/frame.css`` its looks.
    ``templates/frame.html``, ``templates/frame_error.html``  the iframe's pages.

How the gateway mounts it (Starlette)::

    from paygate_checkout import FrameContext, build_frame_route, checkout_static_routes

    async def frame_context(client_secret: str) -> FrameContext | None:
        ...  # look the intent up by client secret; None if there is none
        return FrameContext(merchant_name=..., amount=intent.amount, currency=...,
                            client_secret=client_secret,
                            allowed_origins=tuple(merchant.origins),
                            test_mode=key_is_test)

    routes = [
        *checkout_static_routes(),          # GET /checkout/v1/checkout.js, /checkout/v1/static/*
        build_frame_route(frame_context),   # GET /checkout/v1/frame?clientSecret=…
        # and the gateway's own: GET /checkout/v1/keys  (paygate_server.cards.render_jwks)
        #                        POST /checkout/v1/tokens (decrypt_card_jwe → token)
    ]

The frame route renders :func:`render_frame` with :func:`frame_security_headers`
(strict CSP, ``frame-ancestors`` = the merchant's origins). A route written by hand can
do the same, or call :func:`serve_frame` (the gateway does: it needs the request's state
to look the intent up). The frame fetches ``{base}/keys`` and posts ``{"clientSecret",
"encryptedCard"}`` to ``{base}/tokens``, expecting ``200 {"token", "card"}`` or the
SPEC §2 error body, whose ``error.code``/``error.message`` it passes to the merchant page
as ``paygate:error`` (so messages on that endpoint must be fit for a customer). Client-side
codes it can add: ``network_error``, ``encryption_unavailable``, ``encryption_failed``,
``api_error``; checkout.js adds ``frame_unavailable`` (the frame never became ready).

checkout.js passes ``parentOrigin`` (its page's origin) in the frame URL; the frame posts
to it only if it is one of ``allowed_origins`` (:func:`choose_merchant_origin`), else to
the first one. Register origins with :func:`normalize_origin`.
"""

from __future__ import annotations

from ._money import currency_exponent, format_amount
from ._render import (
    DEFAULT_BASE_PATH,
    STATIC_FILES,
    FrameContext,
    render_frame,
    render_frame_error,
    static_dir,
    templates_dir,
)
from ._routes import FrameUnavailable, build_frame_route, checkout_static_routes, serve_frame
from ._security import (
    choose_merchant_origin,
    frame_security_headers,
    is_valid_origin,
    normalize_origin,
    static_security_headers,
)

__all__ = [
    "DEFAULT_BASE_PATH",
    "STATIC_FILES",
    "FrameContext",
    "FrameUnavailable",
    "build_frame_route",
    "checkout_static_routes",
    "choose_merchant_origin",
    "currency_exponent",
    "format_amount",
    "frame_security_headers",
    "is_valid_origin",
    "normalize_origin",
    "render_frame",
    "render_frame_error",
    "serve_frame",
    "static_dir",
    "static_security_headers",
    "templates_dir",
]
