"""The console's payments in real Chromium against ``paygate demo``'s real processes (the
gateway, the simulator and the console on SQLite), payments made with the SDK: search a
payment by its card's last 4, open it and see its timeline, refund part of it as
``support``; a ``viewer`` has no refund control and its POST is refused; capture part of a
manual-capture payment; a refund form sent twice at once refunds once; replay a failed
webhook delivery."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from paygate_server.config import Settings
from tests.browser.conftest import ServerThread, _listening_socket
from tests.browser.test_console_browser import ConsoleSite, _log_in
from tests.e2e.conftest import FAST_RECONCILE
from tests.examples.demo_process import Demo, running_demo
from tests.support.eventually import eventually_sync

WEBHOOK_RETRIES = "0.05"  # one retry 50 ms after the first failure, then the delivery has failed


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo") / "paygate-data"
    with running_demo(data_dir, **FAST_RECONCILE, PAYGATE_WEBHOOK_RETRY_SCHEDULE_S=WEBHOOK_RETRIES) as running:
        yield running


@pytest.fixture(scope="module")
def site(demo: Demo) -> ConsoleSite:
    url = Settings(data_dir=demo.data_dir).resolved_database_url
    return ConsoleSite(demo.console, url, stranger_url="")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def paid(demo: Demo, amount: int, number: str = "4242424242424242", capture: str = "automatic") -> str:
    """A payment made through the gateway with the SDK, once the processor has answered."""
    with demo.sdk() as client:
        intent = client.payment_intents.create(amount=amount, currency="USD", product_details={"sku": "mug-01"},
                                               capture_method=capture)  # type: ignore[arg-type]
        card = client.encrypt_card(number=number, exp_month=12, exp_year=2034, cvc="123")
        client.payment_intents.process(intent.payment_intent_id, encrypted_card=card)
        eventually_sync(lambda: client.payment_intents.get(intent.payment_intent_id).status,
                        until=lambda s: s in ("succeeded", "requires_capture"), what="the processor's answer")
    return intent.payment_intent_id


def intent_of(demo: Demo, pid: str) -> Any:
    with demo.sdk() as client:
        return client.payment_intents.get(pid)


def signed_in(page: Any, site: ConsoleSite, role: str) -> None:
    _log_in(page, site, site.operator(role))
    page.wait_for_url(site.url + "/")


def test_search_by_last4_open_the_timeline_and_refund_part_as_support(demo: Demo, site: ConsoleSite,
                                                                      page: Any) -> None:
    from playwright.sync_api import expect

    pid = paid(demo, 4321, number="5555555555554444")
    other = paid(demo, 4321)
    signed_in(page, site, "support")
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Payments").click()
    page.get_by_label("Card last 4").fill("4444")
    page.evaluate("window.sameDocument = true")  # gone if the search loads a new page
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=pid)).to_be_visible()
    assert page.evaluate("window.sameDocument === true")  # htmx swapped the results in place
    expect(page.get_by_role("link", name=other)).to_have_count(0)
    assert "last4=4444" in page.url  # the search is in the URL, with or without htmx
    page.get_by_label("Card last 4").fill("44x4")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#p-last4")).to_have_text("Type the card's last 4 digits, like 4242.")
    page.get_by_label("Card last 4").fill("4444")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=pid).click()
    page.wait_for_url(f"{site.url}/payments/{pid}")
    expect(page.locator("#intent-status")).to_have_text("succeeded")
    timeline = page.locator("ol.timeline")
    expect(timeline).to_contain_text("payment_intent.created")
    expect(timeline).to_contain_text("attempt.updated")
    assert "5555555555554444" not in page.content()
    page.get_by_label("Refund amount (USD)").fill("12.34")
    page.get_by_role("button", name="Refund").click()
    expect(page.get_by_role("alert")).to_contain_text("of 12.34 USD: succeeded")
    expect(page.locator("#intent-refunded")).to_have_text("12.34 USD")
    assert intent_of(demo, pid).amount_refunded == 1234
    expect(page.locator("table").last).to_contain_text("payment.refund")  # Operator actions


def test_a_viewer_has_no_refund_control_and_its_post_is_refused(demo: Demo, site: ConsoleSite, page: Any) -> None:
    from playwright.sync_api import expect

    pid = paid(demo, 1500)
    signed_in(page, site, "viewer")
    page.goto(f"{site.url}/payments/{pid}")
    expect(page.locator("#intent-status")).to_have_text("succeeded")
    expect(page.get_by_role("button", name="Refund")).to_have_count(0)
    expect(page.get_by_label("Refund amount (USD)")).to_have_count(0)
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    response = page.request.post(f"{site.url}/payments/{pid}/refund",
                                 form={"csrf": token, "idempotency_key": "viewer-try", "amount": "15.00"},
                                 headers={"origin": site.url})
    assert response.status == 403 and "role cannot" in response.text()
    assert intent_of(demo, pid).amount_refunded == 0


def test_capture_part_of_a_manual_capture_payment(demo: Demo, site: ConsoleSite, page: Any) -> None:
    from playwright.sync_api import expect

    pid = paid(demo, 5000, capture="manual")
    signed_in(page, site, "support")
    page.goto(f"{site.url}/payments/{pid}")
    expect(page.locator("#intent-status")).to_have_text("requires_capture")
    page.get_by_label("Capture amount (USD)").fill("30.00")
    page.get_by_role("button", name="Capture").click()
    expect(page.get_by_role("alert")).to_contain_text("30.00 USD received")
    expect(page.locator("#intent-status")).to_have_text("succeeded")
    intent = intent_of(demo, pid)
    assert (intent.status, intent.amount_received) == ("succeeded", 3000)
    [charge] = demo.charges(pid)  # at the processor: one authorization, 30.00 of it captured
    assert (charge["captured"], charge["amountCaptured"]) == (True, 3000)


def test_a_refund_form_sent_twice_at_once_refunds_once(demo: Demo, site: ConsoleSite, page: Any) -> None:
    from playwright.sync_api import expect

    pid = paid(demo, 2000)
    signed_in(page, site, "support")
    page.goto(f"{site.url}/payments/{pid}")
    page.get_by_label("Refund amount (USD)").fill("5.00")
    # The same form, submitted twice at once by the page itself (what a double click or a
    # flaky network's retry sends): same fields, same idempotency key.
    statuses = page.evaluate("""async () => {
        const form = document.querySelector('form[action$="/refund"]');
        const body = () => new URLSearchParams(new FormData(form));
        const answers = await Promise.all([1, 2].map(() => fetch(form.action, {method: 'POST', body: body()})));
        return answers.map(a => a.status);
    }""")
    assert 200 in statuses and set(statuses) <= {200, 409}, statuses
    assert intent_of(demo, pid).amount_refunded == 500
    page.reload()
    expect(page.locator("#intent-refunded")).to_have_text("5.00 USD")
    page.get_by_label("Refund amount (USD)").fill("5.00")  # a new page: a new form, a new refund
    page.get_by_role("button", name="Refund").click()
    expect(page.get_by_role("alert")).to_contain_text("of 5.00 USD: succeeded")
    assert intent_of(demo, pid).amount_refunded == 1000


def test_replay_a_failed_webhook_delivery(demo: Demo, site: ConsoleSite, page: Any) -> None:
    from playwright.sync_api import expect

    answer = {"status": 500}
    received: list[str] = []

    async def hook(request: Request) -> Response:
        received.append(request.headers.get("webhook-id", ""))
        return Response(status_code=answer["status"])

    receiver = ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), [_listening_socket()])
    receiver.start()
    try:
        with demo.sdk() as client:
            endpoint = client.webhook_endpoints.create(f"http://127.0.0.1:{receiver.ports[0]}/hook",
                                                       events=["payment_intent.created"])
            pid = client.payment_intents.create(amount=700, currency="USD", product_details={"sku": "mug-01"}).payment_intent_id
        signed_in(page, site, "support")
        replay = page.get_by_role("button", name=f"to {endpoint.webhook_endpoint_id}")

        def failed_shown() -> int:
            page.goto(f"{site.url}/payments/{pid}")
            return replay.count()
        eventually_sync(failed_shown, until=lambda n: n == 1, what="the failed delivery on the page")
        tries = len(received)
        answer["status"] = 200
        replay.click()
        expect(page.get_by_role("alert")).to_contain_text(f"will be sent to {endpoint.webhook_endpoint_id} again now")
        eventually_sync(lambda: len(received), until=lambda n: n > tries, what="the replayed delivery")

        def delivered() -> str:
            page.goto(f"{site.url}/payments/{pid}")
            return page.locator("tr", has_text="payment_intent.created").filter(has_text=endpoint.webhook_endpoint_id).inner_text()
        eventually_sync(delivered, until=lambda row: "delivered" in row, what="the delivery recorded")
        expect(replay).to_have_count(0)
        expect(page.locator("table").last).to_contain_text("payment.replay")
    finally:
        receiver.stop()


def test_the_payments_pages_fit_a_390px_phone(browser: Any, demo: Demo, site: ConsoleSite) -> None:
    pid = paid(demo, 990)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        signed_in(page, site, "support")
        for path in ("/payments", f"/payments/{pid}", "/payments?last4=12a4"):
            page.goto(site.url + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    finally:
        context.close()
