"""``/admin/orders/{id}/capture`` and ``/void``: "ship then capture" from the back office.

An order with a made-to-order item is authorized at checkout (``captureMethod:
"manual"``): the customer's card holds the total, nothing is charged. When the order ships
the admin captures — everything, or less when an item cannot be sent (out of stock): the
form lists the lines, each ticked as shipping; an unticked line is left out of the
capture, shipping is always charged. One capture per authorization (SPEC §4): the rest of
the hold is released by the processor. Or the admin voids the order, which releases the
whole hold.

Both forms carry the session's CSRF token. The capture's ``Idempotency-Key`` is the form's
one-time key plus the amount, so a double-submitted form captures once and a corrected
selection after an error is a new request (which the gateway refuses if the first went
through: one capture per authorization). The void's key is derived from the order: there
is only one hold to release.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

import paygate
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from storefront.admin_routes import authorized_post, order_detail
from storefront.money import format_money
from storefront.states import OrderStatus, PaymentUpdate
from storefront.store import Order
from storefront.web import MAX_FORM_BYTES, outcome_unknown, read_body, read_form, render, run, sentence, shop_of

__all__ = ["capture_amount", "routes"]

log = logging.getLogger("storefront.admin")
_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


def capture_amount(order: Order, shipped: set[int]) -> int:
    """What to capture when the lines at positions ``shipped`` go out: their prices plus
    shipping, never more than the hold allows."""
    lines = sum(line.total for i, line in enumerate(order.lines) if i in shipped)
    if lines == 0:
        return 0
    return min(lines + order.shipping, order.payment.amount_capturable)


def _positions(form_items: list[tuple[str, str]], count: int) -> set[int]:
    # Matched against the positions the page offers, never int()ed: "²" passes str.isdigit()
    # and int() refuses it, as it does 5,000 digits (each was a 500).
    offered = {str(i): i for i in range(count)}
    return {offered[value] for key, value in form_items if key == "ship" and value in offered}


async def _form_items(request: Request) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The form (first values) and every ``ship`` box ticked (a field repeated per line)."""
    body = await read_body(request, MAX_FORM_BYTES)
    items = parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    first: dict[str, str] = {}
    for key, value in items:
        first.setdefault(key, value)
    return first, items


async def _reread(shop_order: Order, request: Request) -> Order:
    """The intent as the gateway has it now, applied (after a refusal: why it was refused)."""
    shop = shop_of(request)
    try:
        intent = await shop.client.payment_intents.get(shop_order.intent_id or "")
    except paygate.PaygateError as exc:
        log.warning("could not re-read %s: %s", shop_order.id, exc)
        return shop_order
    return await run(shop.store.apply, shop_order.id, PaymentUpdate.from_sdk(intent))


async def capture(request: Request) -> Response:
    shop = shop_of(request)
    form, items = await _form_items(request)
    sid = await authorized_post(request, form)
    if sid is None:
        return Response("Forbidden.", status_code=403)
    order = await run(shop.store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    typed = form.get("key", "")
    key = typed if _KEY.fullmatch(typed) else None
    shipped = _positions(items, len(order.lines))
    if order.intent_id is None or not order.payment.capturable:
        done = order.payment.received > 0
        return await order_detail(request, order, sid, status_code=409,
                                  error="This order is already captured: one capture per order." if done
                                  else "This order has no authorization to capture.")
    amount = capture_amount(order, shipped)
    unshipped = frozenset(set(range(len(order.lines))) - shipped)
    if amount <= 0:
        return await order_detail(request, order, sid, status_code=400, capture_key=key, unshipped=unshipped,
                                  error="Nothing ships: tick what ships, or void the order to release the hold.")
    try:
        intent = await shop.client.payment_intents.capture(
            order.intent_id, amount=amount, idempotency_key=f"storefront-capture-{key or order.id}-{amount}")
    except paygate.PaygateError as exc:
        log.warning("capture of %s failed: %s", order.id, exc)
        order = await _reread(order, request)
        if outcome_unknown(exc):
            return await order_detail(request, order, sid, status_code=502, capture_key=key, unshipped=unshipped,
                                      error="No answer from the gateway: the capture may have gone through. This "
                                            "page shows the outcome once the gateway knows; submitting the same "
                                            "selection again never captures twice.")
        message = sentence(exc.message or "The gateway refused the capture.")
        return await order_detail(request, order, sid, status_code=502 if exc.http_status is None else 409,
                                  capture_key=key, unshipped=unshipped, error=f"Capture failed: {message}")
    order = await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    if intent.status == "requires_capture" and intent.last_error is not None:
        # Refused with nothing changed: the hold is intact, the admin may try again or void.
        return await order_detail(request, order, sid, status_code=409, capture_key=key, unshipped=unshipped,
                                  error=f"The processor refused the capture of "
                                        f"{format_money(amount, order.currency)}: {intent.last_error.message}")
    # A hold already gone ends "expired": the page says so through the status, no notice.
    state = {OrderStatus.CAPTURED: "captured", OrderStatus.AUTHORIZED: "capturing"}.get(order.status, "")
    return RedirectResponse(f"/admin/orders/{order.id}?hold={state}", status_code=303)


async def void(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    sid = await authorized_post(request, form)
    if sid is None:
        return Response("Forbidden.", status_code=403)
    order = await run(shop.store.get, request.path_params["order_id"])
    if order is None:
        return render(request, "not_found.html", status_code=404)
    if order.intent_id is None or order.status is not OrderStatus.AUTHORIZED:
        return await order_detail(request, order, sid, status_code=409,
                                  error="Only an authorized order can be voided.")
    if form.get("confirm") != "release":
        return await order_detail(request, order, sid, status_code=400,
                                  error="Tick the box to confirm: voiding releases the whole hold.")
    try:
        intent = await shop.client.payment_intents.cancel(
            order.intent_id, idempotency_key=f"storefront-{order.id}-void")
    except paygate.PaygateError as exc:
        log.warning("void of %s failed: %s", order.id, exc)
        order = await _reread(order, request)
        if outcome_unknown(exc):
            return await order_detail(request, order, sid, status_code=502,
                                      error="No answer from the gateway: the void may have gone through. This page "
                                            "shows the outcome once the gateway knows.")
        message = sentence(exc.message or "The gateway refused the void.")
        return await order_detail(request, order, sid, status_code=502 if exc.http_status is None else 409,
                                  error=f"Void failed: {message}")
    order = await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    state = "voided" if order.status is OrderStatus.VOIDED else "voiding"
    return RedirectResponse(f"/admin/orders/{order.id}?hold={state}", status_code=303)


routes = [
    Route("/admin/orders/{order_id}/capture", capture, methods=["POST"]),
    Route("/admin/orders/{order_id}/void", void, methods=["POST"]),
]
