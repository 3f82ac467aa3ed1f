"""What every route shares: the ``Shop`` (config, database, SDK client, templates) and
small helpers — rendering with security headers, form bodies, the order as JSON."""
from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import jinja2
import paygate
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse

from storefront.admin_auth import AdminAuthStore
from storefront.cart import FREE_SHIPPING_FROM, Cart
from storefront.catalog import CATALOG
from storefront.config import StorefrontConfig
from storefront.cookies import CookieSigner
from storefront.money import format_money
from storefront.states import PAID_STATUSES, OrderStatus, decline_message
from storefront.store import Order, OrderStore

__all__ = [
    "CART_COOKIE",
    "MAX_FORM_BYTES",
    "Shop",
    "card_label",
    "hold_state",
    "json_error",
    "order_json",
    "outcome_unknown",
    "read_body",
    "read_form",
    "read_json",
    "render",
    "run",
    "sentence",
    "settle_pending_refunds",
    "shop_of",
]

T = TypeVar("T")
HERE = Path(__file__).parent
CART_COOKIE = "tw_cart"
CART_MAX_AGE_S = 14 * 24 * 3600
MAX_FORM_BYTES = 16 * 1024


def _static_version() -> str:
    """Changes whenever a static file does, so browsers never keep a stale script."""
    digest = hashlib.sha256()
    for path in sorted((HERE / "static").rglob("*")):
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


@dataclass
class Shop:
    config: StorefrontConfig
    store: OrderStore
    auth: AdminAuthStore
    signer: CookieSigner
    templates: jinja2.Environment
    client: paygate.AsyncClient

    @classmethod
    def build(cls, config: StorefrontConfig, client: paygate.AsyncClient) -> Shop:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.StrictUndefined,
        )
        env.filters["money"] = format_money
        env.globals["hold_state"] = hold_state
        env.globals.update(shop_name=config.shop_name, catalog=CATALOG, static_version=_static_version(),
                           gateway_url=config.browser_gateway_url, free_shipping_from=FREE_SHIPPING_FROM)
        return cls(config=config, store=OrderStore(config.database_path),
                   auth=AdminAuthStore(config.database_path), signer=CookieSigner(config.secret_key),
                   templates=env, client=client)

    def cart(self, request: Request) -> Cart:
        return Cart.from_data(self.signer.unsign("cart", request.cookies.get(CART_COOKIE)))

    def cart_cookie(self, cart: Cart) -> str:
        # A fresh nonce in every cookie written: checkout keys the order by the cookie, so
        # the same contents written twice (a second order of the same thing, within the
        # second that the expiry counts in) must not read as the same cart.
        data = {**cart.to_data(), "nonce": secrets.token_urlsafe(12)}
        return self.signer.sign("cart", data, max_age_s=CART_MAX_AGE_S)

    def content_security_policy(self) -> str:
        gateway = urlsplit(self.config.browser_gateway_url)
        origin = f"{gateway.scheme}://{gateway.netloc}"
        # The card form is the gateway's iframe and checkout.js comes from the gateway:
        # nothing else may run here or be framed, and this page may not be framed at all.
        return ("default-src 'self'; "
                f"script-src 'self' {origin}; frame-src {origin}; "
                "connect-src 'self'; img-src 'self' data:; style-src 'self'; "
                "base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'")


async def settle_pending_refunds(shop: Shop, order: Order) -> Order:
    """Refunds the processor had not confirmed (``pending``/``unknown``), each read again
    from the gateway. A confirmed refund also comes as ``refund.succeeded``, but a refused
    one sends no event: without this look the order would show it "being processed" for
    ever and keep its amount out of what can be refunded."""
    if order.intent_id is None or order.payment.amount_refund_pending <= 0:
        return order
    pending = await run(shop.store.pending_refund_ids, order.id)
    refunds = await asyncio.gather(*(shop.client.refunds.get(refund_id) for refund_id in pending))
    outcomes = {refund.refund_id: refund.status for refund in refunds if refund.status}
    return await run(shop.store.settle_refunds, order.id, outcomes)


def shop_of(request: Request) -> Shop:
    shop: Shop = request.app.state.shop
    return shop


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    shop = shop_of(request)
    html = shop.templates.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={
        "Content-Security-Policy": shop.content_security_policy(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Cache-Control": "no-store",
    })


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with ``413`` as soon as it is longer than ``limit``.

    Read as a stream and dropped at the limit, so a client announcing (or simply sending)
    megabytes costs the shop ``limit`` bytes, not the whole upload. The answer closes the
    connection: the rest of the body is never read, so the connection cannot be reused.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    except ClientDisconnect:
        # The connection closed mid-body (the client left, or headerguard's body timeout):
        # a client error answered to no one, not a 500 with a traceback in the shop's log.
        raise HTTPException(400, "The request body was not complete.") from None
    return bytes(body)


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"Request body over {limit // 1024} KiB.", headers={"Connection": "close"})


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (first value of each field), at most
    ``MAX_FORM_BYTES``."""
    body = await read_body(request, MAX_FORM_BYTES)
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


async def read_json(request: Request) -> Any:
    """A JSON body of at most ``MAX_FORM_BYTES``; ``None`` if it is not JSON (nested too
    deeply included: ``json.loads`` raises ``RecursionError`` for that, not ``ValueError``)."""
    body = await read_body(request, MAX_FORM_BYTES)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Database calls run on a worker thread, off the event loop."""
    return await asyncio.to_thread(fn, *args)


#: Brands as their owners write them ("JCB", "UnionPay"): ``str.title()`` would not.
_BRAND_NAMES = {"visa": "Visa", "mastercard": "Mastercard", "amex": "American Express",
                "discover": "Discover", "jcb": "JCB", "diners": "Diners Club", "unionpay": "UnionPay"}


def card_label(order: Order) -> str | None:
    payment = order.payment
    if not payment.card_last4:
        return None
    brand = _BRAND_NAMES.get(payment.card_brand or "", "Card")
    return f"{brand} •••• {payment.card_last4}"


def hold_state(order: Order) -> str:
    """The authorization of a "ship then capture" order, in the back office's words."""
    payment = order.payment
    status = payment.status
    if status is OrderStatus.AUTHORIZED:
        return "Held: capture when it ships, or void"
    if status in PAID_STATUSES:
        if 0 < payment.received < order.total:
            return f"Captured {format_money(payment.received, order.currency)}; the rest released"
        return "Captured"
    if status is OrderStatus.VOIDED:
        return "Released (voided)"
    if status is OrderStatus.EXPIRED:
        return "Expired, released"
    if status is OrderStatus.PROCESSING:
        return "Authorizing…"
    return "No authorization"


def outcome_unknown(exc: paygate.PaygateError) -> bool:
    """True when ``exc`` leaves the operation's outcome unknown — no answer, a gateway
    failure (5xx), or the same request still running there — so it may have happened.
    Only a refusal (4xx) says that nothing was done."""
    if isinstance(exc, (paygate.APIConnectionError, paygate.APIError)):
        return True
    return exc.code == "idempotency_request_in_progress"


def sentence(message: str) -> str:
    """A lower-case message as a sentence: only the first letter is raised, so "USD
    amounts …" stays "USD" (``str.capitalize()`` would lower the rest: "Usd amounts")."""
    text = message.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


_DONE_TITLES = {
    "paid": "Payment received",
    "partially_refunded": "Payment partially refunded",
    "refunded": "Payment refunded",
    "canceled": "Order canceled",
    "authorized": "Card authorized — not charged yet",
    "captured": "Order shipped and charged",
    "voided": "Order canceled — hold released",
    "expired": "Authorization expired — hold released",
}

_HEADLINES = {
    "awaiting_payment": ("Complete your payment", "Enter your card details below to place the order."),
    "processing": ("Confirming your payment…", "This usually takes a few seconds. You can keep this page open."),
    "payment_failed": ("Payment declined", "Nothing was charged. Please pay with another card below."),
    "paid": ("Thank you — your order is confirmed", "We'll email you when it ships."),
    "partially_refunded": ("Order partially refunded", "Part of your payment has been refunded to your card."),
    "refunded": ("Order refunded", "Your payment has been refunded to your card."),
    "canceled": ("Order canceled", "This order was canceled; you have not been charged."),
    "authorized": ("Thank you — your order is placed",
                   "Your card is authorized, not charged: we charge it when your order ships."),
    "captured": ("Your order has shipped", "Your card was charged when it shipped."),
    "voided": ("Order canceled", "The hold on your card was released; you have not been charged."),
    "expired": ("Order canceled",
                "The authorization on your card expired and was released; you have not been charged."),
}


def _detail(order: Order, status: str, detail: str) -> str:
    """The order page's line under the headline, with the amounts of a hold and of a refund
    the processor has not confirmed yet (never called "refunded" before it is)."""
    text = _hold_detail(order, status, detail)
    pending = order.payment.amount_refund_pending
    if pending > 0 and OrderStatus(status) in PAID_STATUSES:
        text += f" A refund of {format_money(pending, order.currency)} is being processed."
    return text


def _hold_detail(order: Order, status: str, detail: str) -> str:
    payment = order.payment
    if payment.manual_capture and status in ("awaiting_payment", "payment_failed"):
        return detail + " Your card is authorized now and charged only when your order ships."
    if status == "authorized":
        held = format_money(payment.held or order.total, order.currency)
        return f"Your card is authorized for {held}, not charged: we charge it when your order ships."
    if payment.manual_capture and status in ("captured", "partially_refunded", "refunded"):
        charged = format_money(payment.received, order.currency)
        if 0 < payment.received < order.total:
            return (f"We charged {charged} for what shipped; the rest of the hold on your card "
                    "was released." + ("" if status == "captured" else " " + detail))
        if status == "captured":
            return f"Your card was charged {charged} when it shipped."
    return detail


def order_json(order: Order) -> dict[str, Any]:
    """What the order page's script renders (labels computed here, once)."""
    status = order.status
    headline, detail = _HEADLINES[status.value]
    detail = _detail(order, status.value, detail)
    message = decline_message(order.payment)
    return {
        "id": order.id,
        "number": order.number,
        "status": status.value,
        "statusLabel": status.label,
        "headline": headline,
        "detail": detail,
        "doneTitle": _DONE_TITLES.get(status.value, status.label),
        "payable": order.payment.payable and order.client_secret is not None,
        "declineMessage": message,
        "total": order.total,
        "totalLabel": format_money(order.total, order.currency),
        # Refunded means confirmed by the processor; a pending refund is shown apart.
        "amountRefunded": order.payment.refunded_settled,
        "amountRefundedLabel": format_money(order.payment.refunded_settled, order.currency),
        "amountRefundPending": order.payment.amount_refund_pending,
        "amountRefundPendingLabel": format_money(order.payment.amount_refund_pending, order.currency),
        "card": card_label(order),
        # "Ship then capture": what is on hold (not charged) and what was charged.
        "captureMethod": order.capture_method,
        "amountHeld": order.payment.held,
        "amountHeldLabel": format_money(order.payment.held, order.currency),
        "amountReceived": order.payment.received,
        "amountReceivedLabel": format_money(order.payment.received, order.currency),
    }


def json_error(status_code: int, message: str, order: Order | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"message": message}}
    if order is not None:
        body["order"] = order_json(order)
    return JSONResponse(body, status_code=status_code)
