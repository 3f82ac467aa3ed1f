"""The storefront in Chromium when an outcome is not known yet: a payment whose answer
was lost on the way back, and a refund the processor has not confirmed.

For the payment, a second storefront process (the example's own ``python -m storefront``) talks to
``paygate demo``'s gateway through a TCP proxy that lets ``POST /api/v1/payment/process``
reach the gateway — which charges the card — but cuts every answer to it: the SDK retries
(the gateway replays), gives up, and the shop answers the page ``502``. The customer must
not see the card form again (they would pay twice): the page stays on "processing" and
shows "paid" once its status call hears it from the gateway.

For the refund, the simulator refunds but loses its answer: the shop's pages say the refund is
being processed, read while the simulator is frozen (SIGSTOP) so that the reconciler cannot
confirm it meanwhile, however slow the browser; once it runs again, the reconciler does.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from paygate_server.storage import open_payment_store
from tests.browser.test_storefront import (
    ADMIN_PASSWORD,
    PAN,
    admin_order,
    checkout,
    expect_status,
    pay,
    record_statuses,
)
from tests.e2e.conftest import FAST_RECONCILE
from tests.examples.demo_process import REPO, Demo, running_demo
from tests.support.background_loop import BackgroundLoop
from tests.support.databases import opened_database
from tests.support.eventually import eventually_sync
from tests.support.tcp_proxy import DroppingProxy

STOREFRONT_DIR = REPO / "examples" / "storefront"


@dataclass
class LossyShop:
    """Quacks like ``Demo`` where the shopping helpers need it (``shop``)."""

    shop: str
    proxy: DroppingProxy


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    # A refund whose answer is lost is looked up again after the schedule's first step, and
    # the simulator answers look-ups whatever faults are set: the refund test freezes the
    # simulator within that step (and checks it did). 3 s (2.4 s at the least, with jitter)
    # leaves a loaded machine ample room; the later steps stay fast.
    with running_demo(tmp_path_factory.mktemp("demo") / "paygate-data",
                      **{**FAST_RECONCILE, "PAYGATE_RECONCILE_SCHEDULE_S": "3,0.3,0.5,1"},
                      STOREFRONT_ADMIN_PASSWORD=ADMIN_PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def proxy_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


@pytest.fixture
def lossy_shop(demo: Demo, proxy_loop: asyncio.AbstractEventLoop, tmp_path: Path) -> Iterator[LossyShop]:
    gateway = urlsplit(demo.gateway)
    proxy = DroppingProxy(gateway.hostname or "127.0.0.1", gateway.port or 80,
                          drop=lambda chunk: chunk.startswith(b"POST /api/v1/payment/process "))
    proxy_url = asyncio.run_coroutine_threadsafe(proxy.start(), proxy_loop).result(timeout=10)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    origin = f"http://127.0.0.1:{listener.getsockname()[1]}"
    # A merchant of its own, whose checkout origin is this shop's.
    created = subprocess.run(
        [sys.executable, "-m", "paygate_server", "merchants", "create", "--name", "Lossy Coffee",
         "--origin", origin, "--json"],
        env={**os.environ, "PAYGATE_DATA_DIR": str(demo.data_dir)}, cwd=REPO,
        capture_output=True, text=True, check=True, timeout=60)
    merchant = json.loads(created.stdout)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STOREFRONT_DIR), os.environ.get("PYTHONPATH", "")]),
           "STOREFRONT_API_KEY": merchant["apiKey"], "STOREFRONT_SIGNING_SECRET": merchant["signingSecret"],
           "STOREFRONT_GATEWAY_URL": proxy_url, "STOREFRONT_GATEWAY_PUBLIC_URL": demo.gateway,
           "STOREFRONT_DATA_DIR": str(tmp_path / "shop"), "STOREFRONT_ADMIN_PASSWORD": "lossy-admin"}
    proc = subprocess.Popen([sys.executable, "-m", "storefront", "--fd", str(listener.fileno())],
                            pass_fds=[listener.fileno()], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually_sync(lambda: _health(origin), until=lambda status: status == 200, timeout=30,
                        interval=0.1, what="the second storefront to answer")
        yield LossyShop(origin, proxy)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        listener.close()
        asyncio.run_coroutine_threadsafe(proxy.close(), proxy_loop).result(timeout=10)


@pytest.fixture
def refund_state(demo: Demo) -> Iterator[Callable[[str], tuple[str, int | None]]]:
    """Read from the demo's database: a refund's status, and how many look-ups the reconciler
    has begun for it (each lease of its check counts one; None: off the queue, settled)."""
    with BackgroundLoop() as loop:  # the sync Playwright test already runs an event loop
        store = open_payment_store(loop.enter(opened_database(f"sqlite:///{demo.data_dir / 'paygate.db'}")))

        async def read(refund_id: str) -> tuple[str, int | None]:
            refund = await store.get_refund(refund_id)
            assert refund is not None, refund_id
            check = await store.check_of("refund", refund_id)
            return refund["status"], None if check is None else check.checks

        yield lambda refund_id: loop.run(read(refund_id))


def _health(origin: str) -> int | None:
    try:
        return httpx.get(f"{origin}/healthz", timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_a_lost_pay_answer_never_offers_the_card_form_again(lossy_shop: LossyShop, page_factory: Any) -> None:
    from playwright.sync_api import expect

    page = page_factory()
    checkout(page, lossy_shop, "tw-mug-12")  # type: ignore[arg-type]
    record_statuses(page)
    answer = pay(page, PAN)
    assert answer["error"]["message"] == "We could not confirm your payment yet. This page will update by itself."
    assert lossy_shop.proxy.dropped >= 1  # the gateway charged the card; the shop never heard
    expect_status(page, "paid")
    # Never "awaiting payment" with a fresh card form in between: that invites paying twice.
    assert page.evaluate("window.__statuses") == ["processing", "paid"]
    expect(page.locator("#payment-panel")).to_be_hidden()


def test_a_refund_the_processor_has_not_confirmed_is_pending_not_refunded(
        demo: Demo, page_factory: Any, refund_state: Callable[[str], tuple[str, int | None]]) -> None:
    from playwright.sync_api import expect

    page = page_factory()
    order_id = checkout(page, demo, "tw-dripper-02")  # 3200 + 500
    pay(page, PAN)
    expect_status(page, "paid")
    admin_order(page, demo, order_id)  # logs the browser in as the shop's admin
    simulator = demo.child_pid("paygate_server.simulator")
    admin = page.context.new_page()
    # The processor acts on the refund but its answer is lost: the gateway's refund is unknown.
    httpx.post(f"{demo.simulator}/v1/_faults", json={"dropResponseRate": 1.0}).raise_for_status()
    try:
        admin.goto(f"{demo.shop}/admin/orders/{order_id}")
        admin.fill("#refund-amount", "6.00")
        admin.locator("#refund-button").click()
        # The shop records the refund once the gateway has answered: the simulator has done it.
        [refund] = eventually_sync(lambda: admin_order(page, demo, order_id)["refunds"], timeout=30,
                                   what="the shop to record the refund")
        # The simulator would answer the reconciler's look-up (faults are drawn on POSTs
        # only) and the refund would be confirmed while the pages below are read: frozen, it
        # answers none, however long they take.
        with _frozen(simulator):
            state = refund_state(refund["refundId"])
            assert state == ("unknown", 0), (
                f"the reconciler had begun looking the refund up before the simulator was frozen (status, "
                f"look-ups begun: {state}): lengthen the first step of PAYGATE_RECONCILE_SCHEDULE_S")
            expect(admin.locator("#admin-order-status")).to_have_text("Paid")
            expect(admin.locator("#admin-notice")).to_contain_text("the processor has not confirmed it yet")
            expect(admin.locator("#admin-refunded")).to_have_text("$0.00")
            expect(admin.locator("#admin-refund-pending")).to_contain_text("$6.00")
            page.reload()
            expect(page.locator("#order-status")).to_have_text("Paid")
            expect(page.locator("#order-detail")).to_contain_text("A refund of $6.00 is being processed.")
    finally:
        httpx.post(f"{demo.simulator}/v1/_faults", json={}).raise_for_status()
    # The reconciler asks the processor; refund.succeeded follows, and only now is it refunded.
    order = eventually_sync(lambda: admin_order(page, demo, order_id),
                            until=lambda o: o["status"] == "partially_refunded", timeout=30, interval=0.2,
                            what="the refund confirmed by the reconciler")
    assert (order["amountRefunded"], order["amountRefundPending"]) == (600, 0)
    page.reload()
    expect(page.locator("#order-status")).to_have_text("Partially refunded")


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP: it runs nothing, answers nothing) until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
