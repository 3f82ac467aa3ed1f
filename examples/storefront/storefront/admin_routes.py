"""``/admin``: the shop owner's pages — orders, and refunds through the SDK.

Login is a password (``STOREFRONT_ADMIN_PASSWORD``) exchanged for a server-side session
(:mod:`storefront.admin_auth`: at most 5 failed passwords per client per 15 minutes) named
by a signed cookie (``HttpOnly``, ``SameSite=Strict``, path ``/admin``, 8 hours). Logging
out ends the session on the server. Every form carries a CSRF token derived from the
session, and POSTs must come from this origin (:mod:`storefront.origin`).

Refunds: a form that fails keeps what was typed; refunding everything that is left asks
for a confirmation first (a second page, so it works without JavaScript).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

import paygate
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from storefront.admin_auth import client_key
from storefront.money import format_decimal, format_money, parse_money
from storefront.states import PaymentUpdate
from storefront.store import Order
from storefront.web import (
    order_json,
    outcome_unknown,
    read_form,
    render,
    run,
    sentence,
    settle_pending_refunds,
    shop_of,
)

__all__ = ["REFUND_REASONS", "authorized_post", "order_detail", "routes"]

log = logging.getLogger("storefront.admin")
SESSION_COOKIE = "tw_admin"
SESSION_MAX_AGE_S = 8 * 3600
REFUND_REASONS = {
    "requested_by_customer": "Requested by customer",
    "damaged": "Arrived damaged",
    "duplicate": "Duplicate order",
    "other": "Other",
}
_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


async def _session(request: Request) -> str | None:
    """The session id, if the cookie is genuine and the session is still open on the server."""
    shop = shop_of(request)
    data = shop.signer.unsign("admin", request.cookies.get(SESSION_COOKIE))
    sid = data.get("sid") if data else None
    if not isinstance(sid, str) or not await run(shop.auth.session_is_open, sid):
        return None
    return sid


def _csrf(request: Request, sid: str) -> str:
    key = shop_of(request).config.secret_key
    return hmac.new(key, b"csrf\x00" + sid.encode(), hashlib.sha256).hexdigest()


async def _authorized_post(request: Request, form: dict[str, str]) -> str | None:
    """The session id of a logged-in POST with its CSRF token (the origin is checked by
    the middleware before any route runs)."""
    sid = await _session(request)
    # As bytes: compare_digest refuses str holding non-ASCII (a TypeError), and a posted
    # token is whatever the client typed.
    if sid is None or not hmac.compare_digest(form.get("csrf", "").encode(), _csrf(request, sid).encode()):
        return None
    return sid


def _login(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    return render(request, "admin_login.html", status_code=status_code, error=error)


async def admin_home(request: Request) -> Response:
    sid = await _session(request)
    if sid is None:
        return _login(request)
    orders = await run(shop_of(request).store.list_orders, 100)
    return render(request, "admin_orders.html", orders=orders, csrf=_csrf(request, sid))


async def login(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    client = client_key(request.client.host if request.client else None)
    verdict = await run(shop.auth.begin_login, client)
    if not verdict.allowed:
        minutes = math.ceil(verdict.retry_after_s / 60)
        response = _login(request, f"Too many wrong passwords. Try again in {minutes} minute"
                                   f"{'s' if minutes != 1 else ''}.", 429)
        response.headers["Retry-After"] = str(verdict.retry_after_s)
        return response
    expected = shop.config.admin_password.encode()
    if not expected or not hmac.compare_digest(form.get("password", "").encode(), expected):
        return _login(request, "That password is not right.", 401)
    await run(shop.auth.login_succeeded, client)
    sid = await run(shop.auth.open_session, SESSION_MAX_AGE_S)
    response = RedirectResponse("/admin", status_code=303)
    token = shop.signer.sign("admin", {"sid": sid}, max_age_s=SESSION_MAX_AGE_S)
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S, path="/admin",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    form = await read_form(request)
    response = RedirectResponse("/admin", status_code=303)
    sid = await _authorized_post(request, form)
    if sid is not None:
        # Ended on the server: the cookie, wherever a copy of it is, opens nothing now.
        await run(shop_of(request).auth.close_session, sid)
        response.delete_cookie(SESSION_COOKIE, path="/admin", httponly=True, samesite="strict")
    return response


@dataclass(frozen=True)
class RefundDraft:
    """What the refund form holds: typed by the merchant, or the defaults for a fresh form."""

    amount: str
    reason: str
    key: str

    @classmethod
    def fresh(cls, order: Order) -> RefundDraft:
        remaining = order.payment.refundable
        return cls(amount=format_decimal(remaining, order.currency) if remaining > 0 else "",
                   reason=next(iter(REFUND_REASONS)), key=secrets.token_urlsafe(18))

    @classmethod
    def typed(cls, form: dict[str, str]) -> RefundDraft:
        key = form.get("key", "")
        reason = form.get("reason", "")
        return cls(amount=form.get("amount", "")[:40],
                   reason=reason if reason in REFUND_REASONS else next(iter(REFUND_REASONS)),
                   # A retry of the same refund keeps its key: the gateway replays, never repeats.
                   key=key if _KEY.fullmatch(key) else secrets.token_urlsafe(18))


async def _detail(request: Request, order: Order, sid: str, *, draft: RefundDraft | None = None,
                  error: str | None = None, notice: str | None = None, status_code: int = 200,
                  capture_key: str | None = None, unshipped: frozenset[int] = frozenset()) -> Response:
    store = shop_of(request).store
    refunds = await run(store.refunds, order.id)
    events = await run(store.webhook_events, order.id)
    return render(request, "admin_order.html", status_code=status_code, order=order,
                  view=order_json(order), refunds=refunds, events=events, csrf=_csrf(request, sid),
                  draft=draft or RefundDraft.fresh(order), reasons=REFUND_REASONS, error=error,
                  notice=notice, remaining=order.payment.refundable,
                  # The capture form's one-time key (kept on a retry: the gateway replays).
                  capture_key=capture_key or secrets.token_urlsafe(18), unshipped=unshipped)


#: For the capture and void routes (storefront.hold_routes).
order_detail = _detail
authorized_post = _authorized_post


async def admin_order(request: Request) -> Response:
    sid = await _session(request)
    if sid is None:
        return RedirectResponse("/admin", status_code=303)
    shop = shop_of(request)
    order = await run(shop.store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    try:
        order = await settle_pending_refunds(shop, order)
    except paygate.PaygateError as exc:  # shown as pending, as stored; the next look asks again
        log.warning("could not settle the pending refunds of %s: %s", order.id, exc)
    notice = error = None
    refunded = request.query_params.get("refunded")
    if refunded:
        notice, error = await _refund_outcome(request, order, refunded)
    done = request.query_params.get("hold")
    if done in _HOLD_NOTICES:
        notice = _HOLD_NOTICES[done]
    return await _detail(request, order, sid, notice=notice, error=error)


async def _refund_outcome(request: Request, order: Order, refund_id: str) -> tuple[str | None, str | None]:
    """(notice, error) for a refund of this order, by what the processor said — never
    "refunded" before it confirmed. An id that is not one of this order's refunds says nothing
    (the query string is anyone's to write)."""
    refunds = await run(shop_of(request).store.refunds, order.id)
    status = next((r["status"] for r in refunds if r["refund_id"] == refund_id), None)
    if status == "succeeded":
        return f"Refund {refund_id}: refunded to the customer's card.", None
    if status in ("pending", "unknown"):
        return (f"Refund {refund_id} sent; the processor has not confirmed it yet. "
                "This page shows the outcome once it does."), None
    if status == "failed":
        return None, f"Refund {refund_id} failed: the processor refused it; nothing was refunded."
    return None, None


async def refund(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    sid = await _authorized_post(request, form)
    if sid is None:
        return Response("Forbidden.", status_code=403)
    order = await run(shop.store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    if order.intent_id is None or order.payment.refundable <= 0:
        return await _detail(request, order, sid, error="Nothing left to refund on this order.", status_code=409)
    draft = RefundDraft.typed(form)
    try:
        amount = parse_money(draft.amount, order.currency)
    except ValueError as exc:
        return await _detail(request, order, sid, draft=draft, error=sentence(str(exc)), status_code=400)
    remaining = order.payment.refundable
    if not 0 < amount <= remaining:
        limit = format_money(remaining, order.currency)
        return await _detail(request, order, sid, draft=draft, status_code=400,
                             error=f"Refund between {format_money(1, order.currency)} and {limit}.")
    if amount == remaining and form.get("confirm") != "full":
        # Everything that is left, in one click, is the costly slip: ask once more.
        return render(request, "admin_refund_confirm.html", order=order, csrf=_csrf(request, sid),
                      draft=draft, amount=amount, reason_label=REFUND_REASONS[draft.reason])
    try:
        # The form's one-time key makes a double-submitted form one refund, not two. The
        # amount and reason are part of it: after an error the merchant may change them,
        # and that is another refund, which the gateway would refuse under the old key.
        result = await shop.client.refunds.create(
            order.intent_id, amount=amount, reason=draft.reason,
            idempotency_key=f"storefront-refund-{draft.key}-{amount}-{draft.reason}")
    except paygate.PaygateError as exc:
        log.warning("refund of %s failed: %s", order.id, exc)
        if outcome_unknown(exc):
            # Perhaps refunded: "failed" would invite a second refund under a new key. The
            # same form again carries the same key, so the gateway replays, never repeats.
            return await _detail(request, order, sid, draft=draft, status_code=502,
                                 error="No answer from the gateway: this refund may have been made. Submit the "
                                       "same form again, unchanged, to find out; it is never refunded twice.")
        message = exc.message or "The gateway refused the refund."
        return await _detail(request, order, sid, draft=draft, error=f"Refund failed: {message}",
                             status_code=502)
    order = await run(shop.store.record_refund, order.id, result.raw, "admin")
    try:
        intent = await shop.client.payment_intents.get(order.intent_id or "")
        await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    except paygate.PaygateError as exc:  # the webhook will bring the total anyway
        log.warning("could not re-read %s after its refund: %s", order.id, exc)
    return RedirectResponse(f"/admin/orders/{order.id}?refunded={result.id}", status_code=303)


_HOLD_NOTICES = {
    "captured": "Captured: the customer's card is charged.",
    "capturing": "Capture sent; the processor has not answered yet. This page shows the outcome once it does.",
    "voided": "Voided: the hold on the customer's card is released.",
    "voiding": "Void sent; the processor has not answered yet.",
}


def _camel(row: dict[str, Any]) -> dict[str, Any]:
    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(part.title() for part in rest)

    return {camel(key): value for key, value in row.items()}


async def order_api(request: Request) -> Response:
    """The order as the shop sees it, with its refunds and the webhooks received: for
    support staff and for the end-to-end tests."""
    if await _session(request) is None:
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
