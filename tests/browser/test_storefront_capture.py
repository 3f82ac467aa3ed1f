""""Ship then capture" in the sample storefront, in Chromium, against ``paygate demo``'s
real processes (gateway and simulator on SQLite, the storefront as a child process).

An order with a made-to-order item is authorized at checkout; the customer's page says
the card is authorized, not charged; the admin captures less when an item is out of
stock, or voids. Each outcome is checked where it lives: the pages, the shop's records
(admin JSON), the gateway (SDK) and the simulator's own records of the authorization.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import paygate
from paygate_server.simulator.testing import advance_clock
from tests.browser.test_storefront import (
    ADMIN_CELLS_FIT,
    ADMIN_PASSWORD,
    PAN,
    admin_order,
    checkout,
    expect_status,
    pay,
)
from tests.e2e.conftest import FAST_RECONCILE
from tests.examples.demo_process import Demo, running_demo
from tests.support.eventually import eventually_sync

MADE_TO_ORDER = "tw-potter-set"  # $86.00, ships later


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo") / "paygate-data"
    with running_demo(data_dir, **FAST_RECONCILE, STOREFRONT_ADMIN_PASSWORD=ADMIN_PASSWORD) as running:
        yield running


def admin_page(page: Any, demo: Demo, order_id: str) -> Any:
    """The admin's order page, from the orders list (``admin_order`` has logged this
    browser context in)."""
    admin = page.context.new_page()
    admin.goto(f"{demo.shop}/admin")
    admin.locator(f'tr[data-order="{order_id}"] a').click()
    return admin


def authorize(page: Any, demo: Demo, *skus: str) -> tuple[str, str]:
    """Check out and pay: the order ends authorized. Returns (order id, intent id)."""
    from playwright.sync_api import expect

    order_id = checkout(page, demo, *skus)
    expect(page.locator("#order-detail")).to_contain_text("charged only when your order ships")
    assert pay(page, PAN)["status"] in {"authorized", "processing"}
    expect_status(page, "authorized")
    intent_id = admin_order(page, demo, order_id)["paymentIntentId"]
    return order_id, intent_id


def webhook_types(page: Any, demo: Demo, order_id: str) -> list[str]:
    return [e["type"] for e in admin_order(page, demo, order_id)["webhookEvents"]]


def test_authorized_then_captured_less_then_refunds_bounded_by_the_capture(demo: Demo, page_factory: Any) -> None:
    from playwright.sync_api import expect

    page = page_factory()
    order_id, intent_id = authorize(page, demo, MADE_TO_ORDER, "tw-mug-12")  # 8600 + 2400, free shipping
    expect(page.locator("#order-status")).to_have_text("Authorized")
    expect(page.locator("#order-held")).to_have_text("$110.00")
    expect(page.locator("#order-detail")).to_have_text(
        "Your card is authorized for $110.00, not charged: we charge it when your order ships.")
    expect(page.locator("#charged-row")).to_be_hidden()
    with demo.sdk() as client:
        held = client.payment_intents.get(intent_id)
    assert (held.status, held.capture_method, held.amount_capturable, held.amount_received) == (
        "requires_capture", "manual", 11000, 0)
    (auth,) = demo.charges(intent_id)
    assert (auth["capture"], auth["status"], auth["amount"], auth["captured"]) == (False, "approved", 11000, False)
    eventually_sync(lambda: webhook_types(page, demo, order_id),
                    until=lambda types: "payment_intent.requires_capture" in types,
                    timeout=20, interval=0.1, what="the payment_intent.requires_capture webhook")

    # The mug is out of stock: untick it, capture the rest.
    admin = admin_page(page, demo, order_id)
    expect(admin.locator("#admin-hold-state")).to_have_text("Held: capture when it ships, or void")
    expect(admin.locator("#admin-held")).to_have_text("$110.00")
    admin.locator("#ship-1").uncheck()
    admin.locator("#capture-button").click()
    expect(admin.locator("#admin-order-status")).to_have_text("Captured")
    expect(admin.locator("#admin-captured")).to_have_text("$86.00")
    expect(admin.locator("#admin-held")).to_have_text("$0.00")
    expect(admin.locator("#admin-hold-state")).to_have_text("Captured $86.00; the rest released")

    with demo.sdk() as client:
        captured = client.payment_intents.get(intent_id)
    assert (captured.status, captured.amount_received, captured.amount_capturable) == ("succeeded", 8600, 0)
    (auth,) = demo.charges(intent_id)  # the simulator's record: one capture, of the smaller amount
    assert (auth["captured"], auth["amountCaptured"], auth["voided"]) == (True, 8600, False)

    page.reload()
    expect(page.locator("#order-status")).to_have_text("Captured")
    expect(page.locator("#order-charged")).to_have_text("$86.00")
    expect(page.locator("#order-detail")).to_contain_text("We charged $86.00 for what shipped")

    # Refunds: the form offers what was captured; a cent more is refused by the shop...
    expect(admin.locator("#refund-amount")).to_have_value("86.00")
    admin.fill("#refund-amount", "86.01")
    admin.locator("#refund-button").click()
    expect(admin.locator("#admin-error")).to_have_text("Refund between $0.01 and $86.00.")
    admin.fill("#refund-amount", "30.00")
    admin.locator("#refund-button").click()
    expect(admin.locator("#admin-order-status")).to_have_text("Partially refunded")
    # ...and by the gateway, whatever the shop thinks: amountReceived bounds refunds.
    with demo.sdk() as client:
        with pytest.raises(paygate.InvalidRequestError) as refused:
            client.refunds.create(intent_id, amount=5601, idempotency_key=f"{order_id}-too-much")
        assert (refused.value.code, refused.value.param) == ("parameter_invalid", "amount")
        assert client.payment_intents.get(intent_id).amount_refunded == 3000
    admin.locator("#refund-button").click()  # what is left: $56.00, confirmed on a second page
    expect(admin.locator("#confirm-amount")).to_have_text("$56.00")
    admin.locator("#confirm-refund-button").click()
    expect(admin.locator("#admin-order-status")).to_have_text("Refunded")
    with demo.sdk() as client:
        assert client.payment_intents.get(intent_id).amount_refunded == 8600
    (auth,) = demo.charges(intent_id)
    assert auth["amountRefunded"] == 8600
    types = eventually_sync(lambda: webhook_types(page, demo, order_id),
                            until=lambda t: t.count("refund.succeeded") == 2 and "payment_intent.succeeded" in t,
                            timeout=20, interval=0.1, what="the capture's and refunds' webhooks")
    assert "payment_intent.requires_capture" in types
    order = admin_order(page, demo, order_id)
    assert (order["status"], order["amountReceived"], order["amountRefunded"]) == ("refunded", 8600, 8600)


def test_a_voided_order_releases_the_hold(demo: Demo, page_factory: Any) -> None:
    from playwright.sync_api import expect

    page = page_factory()
    order_id, intent_id = authorize(page, demo, MADE_TO_ORDER)
    admin = admin_page(page, demo, order_id)
    admin.locator("#void-button").click()  # without the confirmation: refused, nothing sent
    expect(admin.locator("#admin-error")).to_contain_text("Tick the box to confirm")
    assert demo.charges(intent_id)[0]["voided"] is False
    admin.locator("#void-confirm").check()
    admin.locator("#void-button").click()
    expect(admin.locator("#admin-order-status")).to_have_text("Voided")
    expect(admin.locator("#admin-hold-state")).to_have_text("Released (voided)")
    expect(admin.locator("#hold-panel")).to_have_count(0)

    with demo.sdk() as client:
        intent = client.payment_intents.get(intent_id)
    assert (intent.status, intent.cancellation_reason, intent.amount_received) == ("canceled", "requested", 0)
    (auth,) = demo.charges(intent_id)
    assert (auth["voided"], auth["captured"]) == (True, False)

    page.reload()
    expect(page.locator("#order-status")).to_have_text("Voided")
    expect(page.locator("#order-detail")).to_have_text(
        "The hold on your card was released; you have not been charged.")
    eventually_sync(lambda: webhook_types(page, demo, order_id),
                    until=lambda types: "payment_intent.canceled" in types,
                    timeout=20, interval=0.1, what="the payment_intent.canceled webhook")
    assert admin_order(page, demo, order_id)["status"] == "voided"  # the webhook did not change it


def test_an_authorized_order_on_the_admin_fits_a_390px_phone(demo: Demo, page_factory: Any) -> None:
    """The hold's facts, the capture form's lines and the void form: no sideways scrolling."""
    from playwright.sync_api import expect

    page = page_factory()
    order_id, _ = authorize(page, demo, MADE_TO_ORDER, "tw-dripper-02", "tw-filters-100")
    phone = page_factory(width=390, height=844, is_mobile=True, has_touch=True)
    phone.goto(f"{demo.shop}/admin")
    phone.fill("#password", ADMIN_PASSWORD)
    phone.locator("button[type=submit]", has_text="Log in").click()
    row = phone.locator(f'#orders tr[data-order="{order_id}"]')
    expect(row.locator(".hold-note")).to_have_text("$124.00 held")
    for path in ("/admin", f"/admin/orders/{order_id}"):
        phone.goto(demo.shop + path)
        fit = phone.evaluate(ADMIN_CELLS_FIT, 390)
        assert fit["scrollWidth"] <= 390 and fit["cells"] > 6 and fit["outside"] == [], (path, fit)
    for box in ("#ship-0", "#ship-1", "#ship-2", "#void-confirm"):
        phone.locator(box).scroll_into_view_if_needed()
        expect(phone.locator(box)).to_be_in_viewport()


def test_a_capture_after_the_hold_ended_shows_the_order_expired(demo: Demo, page_factory: Any) -> None:
    """The processor's hold ran out while the order waited to ship (the simulator's clock
    moved past it): the admin's capture ends the intent canceled/expired, and the shop says
    so instead of "captured"."""
    from playwright.sync_api import expect

    page = page_factory()
    order_id, intent_id = authorize(page, demo, MADE_TO_ORDER)
    advance_clock(demo.simulator, 8 * 24 * 3600)  # past the simulator's 7-day holds
    admin = admin_page(page, demo, order_id)
    admin.locator("#capture-button").click()
    expect(admin.locator("#admin-order-status")).to_have_text("Authorization expired")
    expect(admin.locator("#admin-hold-state")).to_have_text("Expired, released")
    expect(admin.locator("#hold-panel")).to_have_count(0)
    with demo.sdk() as client:
        intent = client.payment_intents.get(intent_id)
    assert (intent.status, intent.cancellation_reason, intent.amount_received) == ("canceled", "expired", 0)
    (auth,) = demo.charges(intent_id)
    assert (auth["expired"], auth["captured"]) == (True, False)
    page.reload()
    expect(page.locator("#order-status")).to_have_text("Authorization expired")
    expect(page.locator("#order-detail")).to_contain_text("you have not been charged")


@pytest.fixture(scope="module")
def short_holds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """A demo whose gateway voids holds nobody captured after 2 s."""
    data_dir = tmp_path_factory.mktemp("holds") / "paygate-data"
    with running_demo(data_dir, **FAST_RECONCILE, PAYGATE_AUTHORIZATION_TTL_S="2",
                      STOREFRONT_ADMIN_PASSWORD=ADMIN_PASSWORD) as running:
        yield running


def test_a_hold_the_gateway_voids_at_its_ttl_reaches_the_shop_by_webhook(short_holds: Demo,
                                                                         page_factory: Any) -> None:
    """Nobody captured in time: the gateway voids the hold; the shop hears it only from the
    ``payment_intent.canceled`` webhook (no page is polling) and records the order expired."""
    page = page_factory()
    order_id = checkout(page, short_holds, MADE_TO_ORDER)
    pay(page, PAN)
    order = eventually_sync(lambda: admin_order(page, short_holds, order_id),
                            until=lambda o: o["status"] == "expired", timeout=30, interval=0.2,
                            what="the order to be recorded expired")
    assert "payment_intent.canceled" in [e["type"] for e in order["webhookEvents"]]
    assert (order["amountHeld"], order["amountReceived"]) == (0, 0)
    (auth,) = short_holds.charges(order["paymentIntentId"])
    assert (auth["voided"], auth["captured"]) == (True, False)
