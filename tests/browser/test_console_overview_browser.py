"""The console's overview, reconciliation and merchants pages in real Chromium, against real
processes on one SQLite database: the processor simulator, the gateway (``paygate serve``)
and the console (``paygate console``). A burst of real payments through the gateway (SDK →
HTTP → simulator) must show in the charts the page draws; the overview fits 390 px; Tab
reaches the navigation and a form; a merchant and a key created in the page show their
secret once."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import paygate
from paygate_server.clock import now_us
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database, open_payment_store
from paygate_server.storage.port import LateOutcome
from tests.browser.test_console_browser import PASSWORD, ConsoleSite, _off_thread
from tests.e2e.conftest import running_stack
from tests.support.databases import migrated_database_url
from tests.support.eventually import eventually_sync
from tests.support.processes import gateway_env, make_merchant

APPROVED, DECLINED = 7, 3


@dataclass
class Burst:
    site: ConsoleSite
    gateway_url: str


def _pay_burst(database_url: str, gateway_url: str) -> None:
    creds = make_merchant(database_url, "Burst Shop")
    with paygate.Client(creds.api_key, creds.signing_secret, gateway_url) as client:
        for n in range(APPROVED + DECLINED):
            intent = client.payment_intents.create(amount=1000 + n, currency="EUR", product_details={"sku": "mug"})
            number = "4242424242424242" if n < APPROVED else "4000000000009995"
            card = client.encrypt_card(number=number, exp_month=12, exp_year=2034, cvc="123")
            done = client.payment_intents.process(intent.id, encrypted_card=card)
            assert done.status == ("succeeded" if n < APPROVED else "failed")


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Burst]:
    data_dir: Path = tmp_path_factory.mktemp("overview")
    url = _off_thread(lambda: migrated_database_url("sqlite", data_dir))
    with running_stack(url, data_dir / "stack") as stack, \
            ServiceProcess(console_command, log_path=data_dir / "console.log", env=gateway_env(url, data_dir)) as con:
        _off_thread(lambda: _pay_burst(url, stack.gateway.base_url))
        yield Burst(ConsoleSite(con.base_url, url, ""), stack.gateway.base_url)


def _log_in(page: Any, site: ConsoleSite, role: str) -> None:
    page.goto(site.url + "/login")
    page.get_by_label("Email").fill(site.operator(role))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(site.url + "/")


def _wait_for_the_overview(page: Any) -> None:
    """Until the overview has fetched its figures once. Polled with ``evaluate`` (the DevTools
    protocol's own call): ``wait_for_function`` builds its predicate with ``new Function`` in
    the page, which the console's CSP (no ``'unsafe-eval'``) refuses whenever the first check
    is not already true."""
    eventually_sync(lambda: page.evaluate("() => Boolean(window.paygateOverview && window.paygateOverview.fetches >= 1)"),
                    what="the overview's first fetch")


def test_the_charts_draw_the_bursts_payments(browser: Any, burst: Burst) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        _log_in(page, burst.site, "viewer")
        _wait_for_the_overview(page)
        drawn = page.evaluate("""() => {
            const o = window.paygateOverview, sum = a => a.reduce((s, v) => s + (v || 0), 0);
            const outcomes = o.charts.outcomes;
            return {succeeded: sum(o.data.outcomes.succeeded), failed: sum(o.data.outcomes.failed),
                    series: outcomes.series.length, labels: outcomes.series.map(s => s.label), plotted: sum(outcomes.data[1]) + sum(outcomes.data[5]),
                    routes: o.routes, rate: o.data.success_rate.filter(v => v !== null),
                    canvases: document.querySelectorAll('.charts canvas').length, error: o.error};
        }""")
        assert drawn["error"] is None, drawn
        assert (drawn["succeeded"], drawn["failed"]) == (APPROVED, DECLINED)
        assert drawn["labels"][5] == "failed" and drawn["series"] == 7 and drawn["plotted"] == APPROVED + DECLINED  # x + six outcomes, drawn by uPlot
        assert drawn["routes"] == ["simulator"]  # the default processor's approved/declined chart
        assert drawn["canvases"] >= 5
        assert drawn["rate"] and all(0 < r < 100 for r in drawn["rate"])
        assert page.locator('[data-total="payments"]').inner_text() == str(APPROVED + DECLINED)
        assert page.locator("#no-payments").is_hidden()
    finally:
        context.close()


async def _record_a_late_outcome(database_url: str) -> None:
    db = create_database(database_url)
    try:
        assert await open_payment_store(db).record_late_outcome(LateOutcome(
            kind="refund", object_id="re_browser1", intent_id="pi_browser1", merchant_id="mer_browser",
            connector="pa_adyen1", gateway_status="succeeded", processor_status="failed",
            processor_text="Refused by the scheme", received_at=now_us()))
    finally:
        await db.dispose()


def test_the_overview_refreshes_the_open_late_outcomes_and_keeps_the_link(browser: Any, burst: Burst) -> None:
    """One recorded while the page is open shows at its next refresh, still a link to the list."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        _log_in(page, burst.site, "viewer")
        _wait_for_the_overview(page)
        count = page.locator('a[data-total="late_outcomes_open"]')
        assert count.inner_text() == "0" and count.get_attribute("href") == "/reconciliation#late"
        _off_thread(lambda: asyncio.run(_record_a_late_outcome(burst.site.database_url)))
        eventually_sync(lambda: page.locator('a[data-total="late_outcomes_open"]').inner_text(),
                        until=lambda text: text == "1", timeout=30, what="the refreshed count of open late outcomes")
        assert page.locator('a[data-total="late_outcomes_open"]').get_attribute("href") == "/reconciliation#late"
        # Nothing but the page's own refresh changed it: the page was not reloaded.
        assert page.evaluate("window.paygateOverview.fetches") >= 2
    finally:
        context.close()


def test_overview_fits_390px_and_tab_reaches_the_nav_and_a_form(browser: Any, burst: Burst) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        _log_in(page, burst.site, "admin")
        _wait_for_the_overview(page)
        for path in ("/", "/reconciliation", "/merchants"):
            page.goto(burst.site.url + path)
            if path == "/":
                _wait_for_the_overview(page)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        page.goto(burst.site.url + "/merchants")
        reached: list[str] = []
        for _ in range(40):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("(document.activeElement.closest('nav') ? 'nav:' : '') + "
                                         "(document.activeElement.id || document.activeElement.textContent.trim())"))
        assert "nav:Merchants" in reached and "m-name" in reached and "Create merchant" in reached
    finally:
        context.close()


def test_a_merchant_and_a_key_made_in_the_page_show_their_secret_once(browser: Any, burst: Burst) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        _log_in(page, burst.site, "admin")
        page.goto(burst.site.url + "/merchants")
        page.get_by_label("Name").fill("Browser Shop")
        page.get_by_label("Allowed checkout origins").fill("https://browser-shop.example")
        page.get_by_role("button", name="Create merchant").click()
        first = page.locator("code.secret").inner_text()
        assert first.startswith("sk_test_")
        merchant_url = page.url
        page.get_by_role("button", name="Create an API key").click()
        second = page.locator("code.secret").inner_text()
        assert second.startswith("sk_test_") and second != first
        page.get_by_role("link", name="Merchants").first.click()
        page.get_by_role("link", name="Browser Shop").click()
        shown = page.content()
        assert first not in shown and second not in shown and "https://browser-shop.example" in shown
        assert page.locator("code.secret").count() == 0
        assert merchant_url.endswith("/merchants") or "/merchants" in page.url
    finally:
        context.close()
