"""The customer's side: catalog, cart, checkout, the order page and its two JSON calls.

Payment, as the browser sees it: the order page mounts the gateway's card form
(``Paygate.mount``), the form hands back a single-use token, the page POSTs it to
``/orders/{id}/pay``, and this server — never the browser — processes the payment with the
SDK. While the payment is ``processing`` the page long-polls ``/orders/{id}/status``, which
holds the request on a gateway long-poll (SDK ``status(wait=…)``) and answers as soon as
the intent changes.
"""
from __future__ import annotations

import hashlib
import logging
import re

import paygate
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from storefront.cart import MAX_QUANTITY, Cart
from storefront.catalog import CURRENCY, get_product
from storefront.states import OrderStatus, PaymentUpdate
from storefront.store import Order
from storefront.web import (
    CART_COOKIE,
    Shop,
    json_error,
    order_json,
    read_form,
    read_json,
    render,
    run,
    settle_pending_refunds,
    shop_of,
)

__all__ = ["ensure_intent", "routes"]

log = logging.getLogger("storefront")
# Used with fullmatch: re.match with "$" also took a final "\n" (a token so went into an
# idempotency key the SDK refuses).
_TOKEN = re.compile(r"tok_[A-Za-z0-9_-]{8,200}")
_ORDER_ID = re.compile(r"ord_[A-Za-z0-9_-]{10,64}")
_QUANTITY = re.compile(r"[0-9]{1,3}")


def _form_quantity(form: dict[str, str], lowest: int, default: int | None) -> int | None:
    """The form's ``quantity``: a whole number from ``lowest`` to ``MAX_QUANTITY`` (ASCII
    digits only: ``int()`` would also take "1_0", "１０" or " 7 "), ``default`` when the
    field is absent, None when it is anything else — refused, never guessed at."""
    text = form.get("quantity")
    if text is None:
        return default
    if not _QUANTITY.fullmatch(text):
        return None
    value = int(text)
    return value if lowest <= value <= MAX_QUANTITY else None


def _cart_refused(request: Request, cart: Cart, message: str) -> Response:
    """The cart as it was, with why the change was refused (400)."""
    return render(request, "cart.html", status_code=400, cart=cart, lines=cart.lines(), totals=cart.totals(),
                  error=message)


def _int_param(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def catalog(request: Request) -> Response:
    shop = shop_of(request)
    added = get_product(request.query_params.get("added", ""))
    return render(request, "catalog.html", cart=shop.cart(request), added=added)


async def cart_page(request: Request) -> Response:
    shop = shop_of(request)
    cart = shop.cart(request)
    return render(request, "cart.html", cart=cart, lines=cart.lines(), totals=cart.totals(), error=None)


# Prices and the currency are the catalogue's, never the form's: a request carrying them
# is served with them ignored. What the form does say (which product, how many) is checked
# and refused with a message when it is not something the shop's own pages would send.
async def cart_add(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    cart = shop.cart(request)
    sku = form.get("sku", "")
    if get_product(sku) is None:
        return _cart_refused(request, cart, "That product is not in our catalogue.")
    quantity = _form_quantity(form, 1, default=1)
    if quantity is None:
        return _cart_refused(request, cart, f"Choose a quantity from 1 to {MAX_QUANTITY}.")
    if cart.items.get(sku, 0) + quantity > MAX_QUANTITY:
        return _cart_refused(request, cart, f"At most {MAX_QUANTITY} of each item per order.")
    cart.add(sku, quantity)
    return _with_cart(_redirect(f"/?added={sku}" if form.get("stay") else "/cart"), request, cart)


async def cart_update(request: Request) -> Response:
    shop = shop_of(request)
    form = await read_form(request)
    cart = shop.cart(request)
    sku = form.get("sku", "")
    if sku not in cart.items:
        return _cart_refused(request, cart, "That item is not in your cart.")
    quantity = _form_quantity(form, 0, default=None)
    if quantity is None:
        return _cart_refused(request, cart, f"Choose a quantity from 0 to {MAX_QUANTITY} (0 removes the item).")
    cart.set(sku, quantity)
    return _with_cart(_redirect("/cart"), request, cart)


def _with_cart(response: Response, request: Request, cart: Cart) -> Response:
    """``response`` setting the signed cart cookie: ``Secure`` over https, like the admin's
    session cookie, so that a plain-http request on the shop's name never carries it."""
    response.set_cookie(CART_COOKIE, shop_of(request).cart_cookie(cart), httponly=True, samesite="lax",
                        max_age=14 * 86400, secure=request.url.scheme == "https")
    return response


async def checkout(request: Request) -> Response:
    """Turn the cart into an order (prices fixed now) and send the customer to pay it."""
    shop = shop_of(request)
    cart = shop.cart(request)
    lines = cart.lines()
    if not lines:
        return _redirect("/cart")
    # The signed cart cookie names this cart as it is now (it changes with every edit, and
    # is deleted once the order exists): a double-click or a retried POST carries the same
    # one and gets the same order, not a second.
    checkout_key = hashlib.sha256(request.cookies.get(CART_COOKIE, "").encode()).hexdigest()
    order = await run(shop.store.create, lines, cart.totals(), CURRENCY, checkout_key)
    response = _redirect(f"/orders/{order.id}")
    response.delete_cookie(CART_COOKIE)
    return response


async def ensure_intent(shop: Shop, order: Order) -> Order:
    """The order's payment intent, created once. The idempotency key is derived from the
    order, so a retry after a crash or a timeout gets the same intent back (replayed,
    clientSecret included) instead of a second one."""
    if order.intent_id is not None or not order.payment.payable:
        return order
    intent = await shop.client.payment_intents.create(
        amount=order.total,
        currency=order.currency,
        product_details={
            "orderNumber": order.number,
            "items": [{"sku": line.sku, "name": line.name, "quantity": line.quantity,
                       "unitAmount": line.unit_price} for line in order.lines],
        },
        description=f"Order #{order.number} · {order.item_count} item{'s' if order.item_count != 1 else ''}",
        metadata={"orderId": order.id, "orderNumber": str(order.number)},
        # "Ship then capture": authorized now, charged by the admin when the order ships.
        capture_method="manual" if order.payment.manual_capture else None,
        idempotency_key=f"storefront-{order.id}-intent",
    )
    await run(shop.store.attach_intent, order.id, intent.id, intent.client_secret)
    return await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))


async def _order_or_none(request: Request) -> Order | None:
    order_id = request.path_params["order_id"]
    if not _ORDER_ID.fullmatch(order_id):
        return None
    return await run(shop_of(request).store.get, order_id)


async def order_page(request: Request) -> Response:
    shop = shop_of(request)
    order = await _order_or_none(request)
    if order is None:
        return render(request, "not_found.html", status_code=404)
    problem = None
    try:
        known = order.intent_id is not None
        order = await ensure_intent(shop, order)
        if known and (order.payment.payable or order.status is OrderStatus.PROCESSING):
            # The shop's record may be behind: the answer to a payment may have been lost
            # (a timeout, a closed tab). A card form for an order the gateway is already
            # charging would invite the customer to pay twice, so ask the gateway first.
            order = await _refresh(shop, order)
    except paygate.PaygateError as exc:
        log.warning("the payment intent of %s is unavailable: %s", order.id, exc)
        problem = "The payment service is not reachable right now. Please reload this page in a moment."
    try:
        order = await settle_pending_refunds(shop, order)
    except paygate.PaygateError as exc:  # shown as being processed, as stored; the next look asks again
        log.warning("could not settle the pending refunds of %s: %s", order.id, exc)
    view = order_json(order)
    page_config = {"orderId": order.id, "clientSecret": order.client_secret if view["payable"] else None,
                   "order": view, "payUrl": f"/orders/{order.id}/pay",
                   "statusUrl": f"/orders/{order.id}/status"}
    return render(request, "order.html", order=order, view=view, page_config=page_config, problem=problem)


async def pay(request: Request) -> Response:
    """Process the payment with the token the card form produced."""
    shop = shop_of(request)
    order = await _order_or_none(request)
    if order is None:
        return json_error(404, "No such order.")
    body = await read_json(request)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return json_error(400, "The card form did not send a valid token.", order)
    if order.intent_id is None or not order.payment.payable:
        return json_error(409, "This order cannot be paid now.", order)
    try:
        intent = await shop.client.payment_intents.process(
            order.intent_id, token=token, idempotency_key=f"storefront-{order.id}-{token}")
    except paygate.InvalidRequestError as exc:
        if exc.code == "intent_state_conflict":  # another attempt is running, or it is paid
            try:
                order = await _refresh(shop, order)
            except paygate.PaygateError:
                # The page asks for the status until it knows; the stale record would show a card form.
                return json_error(409, "This order is already being paid.")
            return json_error(409, "This order is already being paid.", order)
        if exc.code == "token_invalid":
            return json_error(400, "Your card details expired. Please enter them again.", order)
        log.warning("process refused for %s: %s %s", order.id, exc.code, exc.message)
        return json_error(400, "Your payment could not be submitted. Please try again.", order)
    except paygate.RateLimitError:
        return json_error(429, "Too many payment attempts for this order. Please contact us.", order)
    except paygate.PaygateError as exc:
        # No answer: the payment may or may not have started. Never tell the customer
        # they were not charged; the page asks for the status until it knows.
        # The order as stored (awaiting payment) is not sent: the page would show it, with a
        # fresh card form, for a payment that may be going through.
        log.warning("process for %s got no answer: %s", order.id, exc)
        return json_error(502, "We could not confirm your payment yet. This page will update by itself.")
    order = await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    return JSONResponse(order_json(order))


async def _refresh(shop: Shop, order: Order, wait: int = 0) -> Order:
    """The intent's current status from the gateway, applied to the order. While it is
    ``in_progress``, hold on a long-poll of up to ``wait`` seconds (the gateway answers as
    soon as it changes). A quick look first: a long-poll on a status that already changed
    would wait for the *next* change."""
    if order.intent_id is None:
        return order
    status = await shop.client.payment_intents.status(order.intent_id)
    if status.status == "in_progress" and wait > 0:
        status = await shop.client.payment_intents.status(order.intent_id, wait=wait)
    if order.payment.manual_capture and status.status in _AMOUNTS_MATTER:
        # The status answer has no held or captured amount, nor why a hold ended: the
        # intent object has them (one more call, only for ship-then-capture orders).
        intent = await shop.client.payment_intents.get(order.intent_id)
        return await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(intent))
    return await run(shop.store.apply, order.id, PaymentUpdate.from_sdk(status))


_AMOUNTS_MATTER = frozenset({"requires_capture", "succeeded", "canceled"})


async def status(request: Request) -> Response:
    shop = shop_of(request)
    order = await _order_or_none(request)
    if order is None:
        return json_error(404, "No such order.")
    wait = min(max(_int_param(request.query_params.get("wait"), 0), 0), shop.config.status_wait_s)
    try:
        order = await _refresh(shop, order, wait)
    except paygate.PaygateError as exc:
        # Asked while the outcome is unknown: the stored order may be behind, so none is sent
        # (the page keeps showing "processing" and asks again).
        log.warning("status of %s unavailable: %s", order.id, exc)
        return json_error(503, "Payment status temporarily unavailable.")
    return JSONResponse(order_json(order), headers={"Cache-Control": "no-store"})


async def healthz(_: Request) -> Response:
    return Response("ok", media_type="text/plain")


routes = [
    Route("/", catalog, methods=["GET"]),
    Route("/cart", cart_page, methods=["GET"]),
    Route("/cart/add", cart_add, methods=["POST"]),
    Route("/cart/update", cart_update, methods=["POST"]),
    Route("/checkout", checkout, methods=["POST"]),
    Route("/orders/{order_id}", order_page, methods=["GET"]),
    Route("/orders/{order_id}/pay", pay, methods=["POST"]),
    Route("/orders/{order_id}/status", status, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
