"""``/admin``: the shop owner's pages — orders, and refunds through the SDK.

Login is a password (``STOREFRONT_ADMIN_PASSWORD``) exchanged for a signed session cookie
(``HttpOnly``, ``SameSite=Strict``, path ``/admin``, 8 hours); every form carries a CSRF
token derived from the session, and POSTs must come from this origin.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

import paygate
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from storefront.money import format_decimal, format_money, parse_money
from storefront.states import PaymentUpdate
from storefront.store import Order
from storefront.web import order_json, read_form, render, run, same_origin, shop_of

__all__ = ["REFUND_REASONS", "routes"]

log = logging.getLogger("storefront.admin")
SESSION_COOKIE = "tw_admin"
SESSION_MAX_AGE_S = 8 * 3600
REFUND_REASONS = {
    "requested_by_customer": "Requested by customer",
    "damaged": "Arrived damaged",
    "duplicate": "Duplicate order",
    "other": "Other",
}
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def _session(request: Request) -> str | None:
    data = shop_of(request).signer.unsign("admin", request.cookies.get(SESSION_COOKIE))
    sid = data.get("sid") if data else None
    return sid if isinstance(sid, str) else None


def _csrf(request: Request, sid: str) -> str:
    key = shop_of(request).config.secret_key
    return hmac.new(key, b"csrf\x00" + sid.encode(), hashlib.sha256).hexdigest()


def _authorized_post(request: Request, form: dict[str, str]) -> bool:
    sid = _session(request)
    return (sid is not None and same_origin(request)
            and hmac.compare_digest(form.get("csrf", ""), _csrf(request, sid)))


def _login(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    return render(request, "admin_login.html", status_code=status_code, error=error)


async def admin_home(request: Request) -> Response:
    sid = _session(request)
    if sid is None:
        return _login(request)
    orders = await run(shop_of(request).store.list_orders, 100)
    return render(request, "admin_orders.html", orders=orders, csrf=_csrf(request, sid))


async def login(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    if not same_origin(request):
        return _login(request, "Cross-site login refused.", 403)
    expected = shop.config.admin_password.encode()
    if not expected or not hmac.compare_digest(form.get("password", "").encode(), expected):
        return _login(request, "That password is not right.", 401)
    response = RedirectResponse("/admin", status_code=303)
    token = shop.signer.sign("admin", {"sid": secrets.token_urlsafe(16)}, max_age_s=SESSION_MAX_AGE_S)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, path="/admin",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    form = await read_form(request)
    response = RedirectResponse("/admin", status_code=303)
    if _authorized_post(request, form):
        response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


async def _detail(request: Request, order: Order, sid: str, *, error: str | None = None,
                  notice: str | None = None, status_code: int = 200) -> Response:
    store = shop_of(request).store
    refunds = await run(store.refunds, order.id)
    events = await run(store.webhook_events, order.id)
    remaining = order.payment.refundable
    return render(request, "admin_order.html", status_code=status_code, order=order,
                  view=order_json(order), refunds=refunds, events=events, csrf=_csrf(request, sid),
                  refund_key=secrets.token_urlsafe(18), reasons=REFUND_REASONS, error=error,
                  notice=notice, remaining=remaining,
                  remaining_input=format_decimal(remaining, order.currency) if remaining else "")


async def admin_order(request: Request) -> Response:
    sid = _session(request)
    if sid is None:
        return RedirectResponse("/admin", status_code=303)
    order = await run(shop_of(request).store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    notice = None
    refunded = request.query_params.get("refunded")
    if refunded:
        notice = f"Refund {refunded} sent to the gateway."
    return await _detail(request, order, sid, notice=notice)


async def refund(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    sid = _session(request)
    if sid is None or not _authorized_post(request, form):
        return Response("Forbidden.", status_code=403)
    order = await run(shop.store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    if order.intent_id is None or order.payment.refundable <= 0:
        return await _detail(request, order, sid, error="Nothing left to refund on this order.", status_code=409)
    try:
        amount = parse_money(form.get("amount", ""), order.currency)
    except ValueError as exc:
        return await _detail(request, order, sid, error=str(exc).capitalize() + ".", status_code=400)
    if not 0 < amount <= order.payment.refundable:
        limit = format_money(order.payment.refundable, order.currency)
        return await _detail(request, order, sid, error=f"Refund between {format_money(1, order.currency)} and {limit}.", status_code=400)
    key = form.get("key", "")
    reason = form.get("reason") if form.get("reason") in REFUND_REASONS else None
    try:
        # The form's one-time key makes a double-submitted form one refund, not two.
        result = await shop.client.refunds.create(
            order.intent_id, amount=amount, reason=reason,
            idempotency_key=f"storefront-refund-{key}" if _KEY.match(key) else None)
    except paygate.PaygateError as exc:
        log.warning("refund of %s failed: %s", order.id, exc)
        message = exc.message or "The gateway refused the refund."
        return await _detail(request, order, sid, error=f"Refund failed: {message}", status_code=502)
    order = await run(shop.store.record_refund, order.id, result.raw, "admin")
    try:
        intent = await shop.client.payment_intents.get(order.intent_id or "")
        await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    except paygate.PaygateError as exc:  # the webhook will bring the total anyway
        log.warning("could not re-read %s after its refund: %s", order.id, exc)
    return RedirectResponse(f"/admin/orders/{order.id}?refunded={result.id}", status_code=303)


def _camel(row: dict[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(key): value for key, value in row.items()}


async def order_api(request: Request) -> Response:
    """The order as the shop sees it, with its refunds and the webhooks received: for
    support staff and for the end-to-end tests."""
    if _session(request) is None:
        return JSONResponse({"error": {"message": "log in at /admin"}}, status_code=401)
    store = shop_of(request).store
    order = await run(store.get, request.path_params["order_id"])
    if order is None:
        return JSONResponse({"error": {"message": "no such order"}}, status_code=404)
    body: dict[str, Any] = {
        **order_json(order),
        "paymentIntentId": order.intent_id,
        "lines": [{"sku": line.sku, "name": line.name, "unitPrice": line.unit_price,
                   "quantity": line.quantity} for line in order.lines],
        "refunds": [_camel(r) for r in await run(store.refunds, order.id)],
        "webhookEvents": [_camel(e) for e in await run(store.webhook_events, order.id)],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


routes = [
    Route("/admin", admin_home, methods=["GET"]),
    Route("/admin/login", login, methods=["POST"]),
    Route("/admin/logout", logout, methods=["POST"]),
    Route("/admin/orders/{order_id}", admin_order, methods=["GET"]),
    Route("/admin/orders/{order_id}/refund", refund, methods=["POST"]),
    Route("/admin/api/orders/{order_id}", order_api, methods=["GET"]),
]
