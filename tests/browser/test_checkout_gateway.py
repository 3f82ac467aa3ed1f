"""The hosted checkout end to end in Chromium, against the REAL gateway process and the
processor simulator (``tests.e2e.conftest.running_stack``), on SQLite and PostgreSQL.

Gateway ``http://127.0.0.1:<p1>`` (a ``paygate serve`` child process), merchant shop
``http://localhost:<p2>`` (registered for the merchant), stranger
``http://localhost:<p3>`` (not registered). The test types a test card into the frame,
the merchant page receives ``paygate:token``, the test's "merchant server" processes that
token through the signed API, and the payment succeeds at the simulator — while no
captured byte of the flow, no database row or file and no log line holds the card
number, and the CVC is gone from the vault once the authorization is known.

Playwright's sync API marks its event loop as running in this thread, so async code
(the signed client, database reads) runs in a helper thread (:func:`run_async`).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import select, text

import paygate
from paygate_server.storage import create_database
from paygate_server.storage.schema_checkout import vault_cards
from tests.browser.conftest import (
    CHROMIUM,
    ServerThread,
    Sites,
    _listening_socket,
    _merchant_app,
    console_of,
    launch_browser,
)
from tests.e2e.conftest import Stack, running_stack
from tests.support.eventually import eventually_sync
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import Credentials, SignedClient

PAN = "4242424242424242"
PAN_FORMS = (PAN, "4242 4242 4242 4242", "4242-4242-4242-4242", PAN.encode().hex())
CVC = "731"
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def off_thread(fn: Callable[..., T], *args: Any) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run async code beside Playwright's sync API (see the module docstring)."""
    return off_thread(lambda: asyncio.run(make()))  # type: ignore[arg-type]


@dataclass
class Real:
    stack: Stack
    sites: Sites
    #: (direction, url, bytes) of every merchant-server <-> gateway API exchange.
    api_traffic: list[tuple[str, str, bytes]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.stack.gateway.base_url

    def merchant(self, name: str = "Acme Coffee Roasters", origins: list[str] | None = None) -> Credentials:
        return off_thread(make_merchant, self.stack.database_url, name,
                          origins if origins is not None else [self.sites.merchant])

    def api(self, creds: Credentials, call: Callable[[SignedClient], Awaitable[T]], base_url: str | None = None) -> T:
        """A signed call from the merchant's server, its bytes recorded."""
        async def on_request(request: httpx.Request) -> None:
            self.api_traffic.append(("request", str(request.url), request.content))

        async def on_response(response: httpx.Response) -> None:
            self.api_traffic.append(("response", str(response.url), await response.aread()))

        async def go() -> T:
            hooks = {"request": [on_request], "response": [on_response]}
            async with httpx.AsyncClient(base_url=base_url or self.gateway, timeout=30, event_hooks=hooks) as http:
                return await call(SignedClient(http, creds))

        return run_async(go)

    def query(self, statement: Any) -> list[Any]:
        async def go() -> list[Any]:
            db = create_database(self.stack.database_url)
            try:
                async with db.read() as conn:
                    return list((await conn.execute(statement)).all())
            finally:
                await db.dispose()

        return run_async(go)


def _browser_available() -> None:
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright Python package is not installed")


@pytest.fixture(scope="module")
def real(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Real]:
    _browser_available()
    box: dict[str, Sites] = {}
    shops = ServerThread(_merchant_app(box), [_listening_socket(), _listening_socket()])
    merchant_port, stranger_port = shops.ports
    with running_stack(database_url, tmp_path_factory.mktemp("checkout-stack"),
                       PAYGATE_VAULT_PURGE_INTERVAL_S="0.2") as stack:
        box["sites"] = Sites(gateway=stack.gateway.base_url, merchant=f"http://localhost:{merchant_port}",
                             stranger=f"http://localhost:{stranger_port}", checkouts={}, token_requests=[])
        shops.start()
        try:
            yield Real(stack, box["sites"])
        finally:
            shops.stop()


@pytest.fixture(scope="module")
def browser(real: Real) -> Iterator[Any]:
    """This module's Chromium: started after the stack, closed before it stops."""
    yield from launch_browser()


def _frame(page: Any) -> Any:
    for frame in page.frames:
        if "/checkout/v1/frame" in frame.url:
            return frame
    raise AssertionError(f"no checkout frame among {[f.url for f in page.frames]}")


def _open(page: Any, real: Real, client_secret: str) -> Any:
    page.goto(f"{real.sites.merchant}/shop/checkout?secret={client_secret}")
    page.wait_for_function("window.__paygate.ready === 1")
    return _frame(page)


def _fill(frame: Any, number: str = "4242 4242 4242 4242") -> None:
    frame.locator("#pg-number").press_sequentially(number)
    frame.locator("#pg-expiry").press_sequentially("12 / 34")
    frame.locator("#pg-cvc").press_sequentially(CVC)
    frame.locator("#pg-name").press_sequentially("Jane Doe")


def _process(real: Real, creds: Credentials, intent_id: str, token: str) -> httpx.Response:
    return real.api(creds, lambda shop: shop.post("/api/v1/payment/process", {
        "paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": {"token": token}}))


def _har_exchanges(path: Path) -> Iterator[tuple[str, str, bytes, str]]:
    """(url, direction, body, content type) of every request and response in a HAR."""
    for entry in json.loads(path.read_text())["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        headers = " ".join(f"{h['name']}: {h['value']}" for h in request["headers"])
        yield request["url"], "request", (request.get("postData", {}).get("text") or "").encode() + headers.encode(), ""
        content = response.get("content", {})
        body = content.get("text") or ""
        raw = base64.b64decode(body) if content.get("encoding") == "base64" else body.encode()
        yield request["url"], "response", raw, content.get("mimeType", "")


def _assert_no_card_data(label: str, url: str, data: bytes, *, json_body: bool) -> None:
    for needle in PAN_FORMS:
        assert needle.encode() not in data, (label, url)
        assert needle not in url, (label, url)
    assert f'"{CVC}"'.encode() not in data and f"cvc={CVC}" not in url, (label, url)
    if json_body:
        assert b'"cvc"' not in data, (label, url)


def _storage_dump(real: Real) -> bytes:
    """Every byte the database holds: the SQLite files, or every row of every table."""
    url = real.stack.database_url
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        files = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
        assert files and path.with_name(path.name + "-wal") in files  # the WAL is read too
        return b"".join(p.read_bytes() for p in files)
    tables = [r[0] for r in real.query(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
    assert "vault_cards" in tables and "change_log" in tables
    rows = []
    for table in tables:
        rows += [r[0] for r in real.query(text(f'SELECT t::text FROM "{table}" t'))]
    assert any("vlt_" in r for r in rows)
    return "\n".join(rows).encode()


def test_pay_with_a_token_from_the_frame(real: Real, page_factory: Any, tmp_path: Path) -> None:
    creds = real.merchant()
    intent = real.api(creds, lambda shop: shop.create_intent(
        amount=2599, currency="USD", description="Order #1042 · 2 items"))
    pid, secret = intent["paymentIntentId"], intent["clientSecret"]
    har = tmp_path / "checkout.har"
    page = page_factory(record_har_path=str(har), record_har_content="embed")
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    frame = _open(page, real, secret)
    assert frame.locator("#pg-amount").inner_text() == "$25.99"
    assert frame.locator("#pg-merchant-name").inner_text() == "Acme Coffee Roasters"

    # The merchant page follows the status over the checkout's SSE stream (cross-origin).
    page.evaluate("""([gateway, secret]) => {
        window.__statuses = [];
        const source = new EventSource(gateway + "/checkout/v1/status/stream?clientSecret=" + encodeURIComponent(secret));
        source.addEventListener("status", (e) => window.__statuses.push(JSON.parse(e.data).status));
    }""", [real.gateway, secret])
    page.wait_for_function("window.__statuses.length >= 1")

    _fill(frame)
    # The merchant page's scripts cannot read the frame's fields.
    assert page.evaluate("""() => {
        try { return document.querySelector("iframe").contentWindow.document.getElementById("pg-number").value; }
        catch (error) { return "blocked:" + error.name; }
    }""") == "blocked:SecurityError"
    frame.locator("#pg-submit").click()
    page.wait_for_function("window.__paygate.tokens.length === 1")
    received = page.evaluate("window.__paygate")
    assert received["errors"] == []
    token = received["tokens"][0]
    assert re.fullmatch(r"tok_[a-z0-9]{32}", token["token"])
    assert token["card"] == {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}

    # The merchant's server charges the token through the signed API.
    answer = _process(real, creds, pid, token["token"])
    assert answer.status_code == 200, answer.text
    final = real.api(creds, lambda shop: shop.final_status(pid))
    assert final["status"] == "succeeded" and final["amount"] == 2599
    charges = real.stack.charges_at_processor(pid)
    assert [(c["status"], c["amount"]) for c in charges] == [("approved", 2599)]
    page.wait_for_function("window.__statuses.includes('succeeded')")

    # Single use.
    again = _process(real, creds, pid, token["token"])
    assert again.status_code == 400 and again.json()["error"]["code"] == "token_invalid"

    # The CVC is gone once the authorization is known; the number stays, encrypted.
    def vault_state() -> Any:
        rows = real.query(select(vault_cards.c.cvc_sealed, vault_cards.c.used_at)
                          .where(vault_cards.c.intent_id == pid))
        return rows if rows and rows[0].cvc_sealed is None else None

    rows = eventually_sync(vault_state, interval=0.05, what="the CVC to be dropped")
    assert len(rows) == 1 and rows[0].used_at is not None

    # Nothing captured on the wire carries the card in the clear: the browser's whole flow
    # (HAR with bodies), and the merchant server's API calls.
    page.context.close()
    exchanges = list(_har_exchanges(har))
    token_posts = [e for e in exchanges if e[0].endswith("/checkout/v1/tokens") and e[1] == "request"]
    assert len(token_posts) == 1 and b"encryptedCard" in token_posts[0][2]
    for url, direction, data, mime in exchanges:
        _assert_no_card_data(f"browser {direction}", url, data,
                             json_body=direction == "request" or "json" in mime)
    assert real.api_traffic
    for direction, url, data in real.api_traffic:
        _assert_no_card_data(f"api {direction}", url, data, json_body=True)
    assert [e for e in console_errors if "favicon" not in e] == []

    # At rest: no card number in the database (raw SQLite file and WAL, or every
    # PostgreSQL row), nor in the gateway's log.
    dump = _storage_dump(real)
    for needle in PAN_FORMS:
        assert needle.encode() not in dump
    assert PAN not in real.stack.gateway.output()


def test_frame_refuses_an_unregistered_origin(real: Real, page_factory: Any) -> None:
    creds = real.merchant()
    intent = real.api(creds, lambda shop: shop.create_intent())
    response = httpx.get(f"{real.gateway}/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
    assert response.status_code == 200
    assert f"frame-ancestors {real.sites.merchant}" in response.headers["content-security-policy"]
    page = page_factory()
    console = console_of(page)
    # The stranger copies the merchant's page, clientSecret and all.
    page.goto(f"{real.sites.stranger}/shop/checkout?secret={intent['clientSecret']}")
    page.wait_for_function("window.__paygate.errors.length === 1")
    received = page.evaluate("window.__paygate")
    assert received["errors"] == [{"code": "frame_unavailable", "message": "The payment form could not be loaded."}]
    assert received["ready"] == 0
    assert all(f.locator("#pg-number").count() == 0 for f in page.frames)
    assert any("frame-ancestors" in line for line in console)


def test_foreign_messages_are_ignored(real: Real, page_factory: Any) -> None:
    creds = real.merchant()
    intent = real.api(creds, lambda shop: shop.create_intent())
    page = page_factory()
    _open(page, real, intent["clientSecret"])
    height = page.evaluate("document.querySelector('iframe').style.height")
    page.evaluate("""(url) => {
        const other = document.createElement("iframe");
        other.src = url;
        document.body.appendChild(other);
        ["paygate:token", "paygate:error", "paygate:resize"].forEach((type) =>
            window.postMessage({type, token: "tok_self", height: 1, code: "x", tag: "self"}, "*"));
    }""", f"{real.sites.stranger}/foreign-poster?tag=sibling")
    page.wait_for_function("""() => {
        const tags = window.__paygate.raw.map((m) => m.tag);
        return tags.filter((t) => t === "sibling").length === 4 && tags.filter((t) => t === "self").length === 3;
    }""")
    received = page.evaluate("window.__paygate")
    assert received["tokens"] == [] and received["errors"] == [] and received["ready"] == 1
    assert page.evaluate("document.querySelector('iframe').style.height") == height


def _tokenize(base_url: str, client_secret: str, number: str = PAN) -> httpx.Response:
    jwks = httpx.get(f"{base_url}/checkout/v1/keys").json()
    jwe = paygate.encrypt_card(jwks, number=number, exp_month=12, exp_year=2034, cvc=CVC)
    return httpx.post(f"{base_url}/checkout/v1/tokens", json={"clientSecret": client_secret, "encryptedCard": jwe})


def test_tokens_are_bound_to_their_intent_and_merchant(real: Real) -> None:
    shop, stranger = real.merchant(), real.merchant("Stranger")
    mine = real.api(shop, lambda s: s.create_intent())
    other = real.api(shop, lambda s: s.create_intent())
    theirs = real.api(stranger, lambda s: s.create_intent())
    r = _tokenize(real.gateway, mine["clientSecret"])
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    for creds, intent_id in ((shop, other["paymentIntentId"]), (stranger, theirs["paymentIntentId"]),
                             (stranger, mine["paymentIntentId"])):
        refused = _process(real, creds, intent_id, token)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "token_invalid", refused.text
    assert _process(real, shop, mine["paymentIntentId"], token).status_code == 200


def test_twenty_first_tokenization_is_refused(real: Real) -> None:
    creds = real.merchant()
    intent = real.api(creds, lambda s: s.create_intent())
    codes = [_tokenize(real.gateway, intent["clientSecret"]).status_code for _ in range(20)]
    assert codes == [200] * 20
    refused = _tokenize(real.gateway, intent["clientSecret"])
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited" and int(refused.headers["retry-after"]) > 0
    assert refused.json()["error"]["requestId"] == refused.headers["x-request-id"]


def test_expired_token_is_refused(real: Real, tmp_path: Path) -> None:
    """A second gateway process on the same database makes tokens that live 1 s."""
    creds = real.merchant()
    intent = real.api(creds, lambda s: s.create_intent())
    with start_gateway(real.stack.database_url, tmp_path, name="gateway-short-ttl",
                       PAYGATE_PROCESSOR_URL=real.stack.simulator.base_url, PAYGATE_TOKEN_TTL_S="1",
                       PAYGATE_VAULT_PURGE_INTERVAL_S="0.2") as short:
        r = _tokenize(short.base_url, intent["clientSecret"])
        assert r.status_code == 200, r.text
    # Expired, then purged (its card was never charged: the whole row goes).
    eventually_sync(lambda: not real.query(select(vault_cards.c.id).where(
        vault_cards.c.intent_id == intent["paymentIntentId"])), interval=0.05, what="the expired token to be purged")
    refused = _process(real, creds, intent["paymentIntentId"], r.json()["token"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "token_invalid"


@pytest.mark.skipif(os.environ.get("PAYGATE_SCREENSHOTS") != "1", reason="set PAYGATE_SCREENSHOTS=1")
def test_screenshots(real: Real, page_factory: Any) -> None:
    images = REPO / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    creds = real.merchant()
    for name, options in {
        "checkout-desktop.png": {"width": 1280, "height": 800},
        "checkout-phone.png": {"width": 390, "height": 844, "device_scale_factor": 2, "is_mobile": True},
    }.items():
        intent = real.api(creds, lambda s: s.create_intent(amount=1999, description="Order #1042 · 2 items"))
        page = page_factory(**options)
        frame = _open(page, real, intent["clientSecret"])
        frame.locator("#pg-number").press_sequentially("4242 4242 4242 4242")
        frame.locator("#pg-expiry").press_sequentially("12 / 34")
        frame.locator("#pg-name").press_sequentially("Jane Doe")
        frame.locator("#pg-cvc").focus()
        content = frame.evaluate("() => Math.ceil(document.documentElement.getBoundingClientRect().height)")
        page.wait_for_function("(h) => document.querySelector('iframe').style.height === h + 'px'", arg=content)
        page.screenshot(path=str(images / name), full_page=True, animations="disabled")
        assert (images / name).stat().st_size > 10_000
