"""Browser test harness: Chromium through Playwright, and in-process HTTP servers.

- ``browser``: one headless Chromium per test module (``/usr/bin/chromium``, never a
  downloaded browser). Tests are skipped, with the reason, when Chromium or the
  ``playwright`` package is missing. Module scope, not session: Playwright's sync API
  keeps its event loop marked as running in this thread while it is open, which would
  break every asyncio test that the same xdist worker runs afterwards.
- ``checkout_sites``: a stand-in gateway (``http://127.0.0.1:<p1>``) serving the real
  checkout package — static files, the frame with its real security headers — plus
  ``/checkout/v1/keys`` (a fresh RSA key) and ``/checkout/v1/tokens`` (which really
  decrypts with ``decrypt_card_jwe``); a merchant site (``http://localhost:<p2>``, the
  registered origin) and a stranger site (``http://localhost:<p3>``, not registered).
  Three origins, all secure contexts (loopback), all on ports the OS picked.

The stand-in is test code on purpose: the real ``/keys`` and ``/tokens`` belong to the
gateway core.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.eventually import eventually_sync

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def launch_browser(extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Chromium through Playwright, or a skip that says what is missing; ``extra_args``
    after the usual ones (e.g. ``--host-resolver-rules``)."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


# --- in-process servers --------------------------------------------------------------


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class ServerThread:
    """uvicorn serving one ASGI app on pre-bound sockets, in a daemon thread."""

    def __init__(self, app: Any, sockets: list[socket.socket]) -> None:
        import uvicorn

        self.sockets = sockets
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": sockets}, daemon=True
        )

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self.sockets]

    def start(self) -> None:
        self.thread.start()
        eventually_sync(self._started, timeout=15, interval=0.01, what="the test server to start")

    def _started(self) -> bool:
        if not self.thread.is_alive():
            raise RuntimeError("test server thread died while starting")
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()


# --- the stand-in gateway --------------------------------------------------------------


@dataclass
class Checkout:
    """One checkout (a payment intent) known to the stand-in gateway."""

    client_secret: str
    amount: int = 1999
    currency: str = "USD"
    merchant_name: str = "Acme Coffee Roasters"
    description: str | None = "Order #1042 · 2 items"
    test_mode: bool = True
    #: If set, POST /tokens answers this SPEC §2 error: (status, type, code, message).
    fail_with: tuple[int, str, str, str] | None = None
    decrypted: list[Any] = field(default_factory=list)
    frame_requests: int = 0


@dataclass
class Sites:
    gateway: str
    merchant: str
    stranger: str
    checkouts: dict[str, Checkout]
    token_requests: list[dict[str, Any]]

    def new_checkout(self, **kwargs: Any) -> Checkout:
        checkout = Checkout(client_secret="pi_test_secret_" + secrets.token_hex(16), **kwargs)
        self.checkouts[checkout.client_secret] = checkout
        return checkout

    def merchant_page(self, checkout: Checkout, *, origin: str | None = None) -> str:
        return f"{origin or self.merchant}/shop/checkout?secret={checkout.client_secret}"


def _gateway_app(sites_box: dict[str, Sites], private_key: Any, kid: str) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from paygate_checkout import FrameContext, build_frame_route, checkout_static_routes
    from paygate_server.cards import InvalidCardData, decrypt_card_jwe, render_jwks

    def error(status: int, type_: str, code: str, message: str, param: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "error": {"type": type_, "code": code, "message": message, "requestId": "req_test"}
        }
        if param:
            body["error"]["param"] = param
        return JSONResponse(body, status_code=status)

    async def frame_context(client_secret: str) -> FrameContext | None:
        sites = sites_box["sites"]
        checkout = sites.checkouts.get(client_secret)
        if checkout is None:
            return None
        checkout.frame_requests += 1
        return FrameContext(
            merchant_name=checkout.merchant_name,
            amount=checkout.amount,
            currency=checkout.currency,
            client_secret=client_secret,
            allowed_origins=(sites.merchant,),
            description=checkout.description,
            test_mode=checkout.test_mode,
        )

    async def keys(_: Request) -> JSONResponse:
        return JSONResponse(render_jwks({kid: private_key}), headers={"Cache-Control": "no-store"})

    async def tokens(request: Request) -> JSONResponse:
        sites = sites_box["sites"]
        try:
            body = await request.json()
        except ValueError:
            return error(400, "invalid_request_error", "invalid_json", "Body is not JSON.")
        sites.token_requests.append(body)
        checkout = sites.checkouts.get(body.get("clientSecret"))
        if checkout is None:
            return error(404, "invalid_request_error", "resource_missing", "No such checkout.")
        if checkout.fail_with is not None:
            return error(*checkout.fail_with)
        try:
            card = decrypt_card_jwe(
                body.get("encryptedCard"), {kid: private_key}, now=datetime.now(UTC)
            )
        except InvalidCardData as exc:
            return error(400, "invalid_request_error", "parameter_invalid", str(exc), "encryptedCard")
        checkout.decrypted.append(card)
        return JSONResponse(
            {"token": "tok_test" + secrets.token_hex(12), "card": card.summary()}
        )

    return Starlette(
        routes=[
            *checkout_static_routes(),
            build_frame_route(frame_context),
            Route("/checkout/v1/keys", keys),
            Route("/checkout/v1/tokens", tokens, methods=["POST"]),
        ]
    )


_MERCHANT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Checkout — Acme Coffee Roasters</title>
<style>
  body {{ margin: 0; background: #f3f5f8; font-family: system-ui, sans-serif; color: #1a2233; }}
  .shop {{ max-width: 460px; margin: 0 auto; padding: 32px 16px; }}
  h1 {{ font-size: 20px; margin: 0 0 16px; }}
  .panel {{ background: #fff; border-radius: 12px; padding: 8px 20px 16px;
            box-shadow: 0 1px 3px rgba(16,24,40,.08), 0 8px 24px rgba(16,24,40,.06); }}
  @media (max-width: 480px) {{ .shop {{ padding: 20px 12px; }} .panel {{ padding: 4px 14px 12px; }} }}
</style>
</head><body>
<main class="shop"><h1>Checkout</h1><div class="panel"><div id="card-element"></div></div></main>
<script src="{gateway}/checkout/v1/checkout.js"></script>
<script>
  window.__paygate = {{ready: 0, tokens: [], errors: [], raw: []}};
  // Records every message this window receives, to know when a message has been handled.
  window.addEventListener("message", function (event) {{
    var data = event.data || {{}};
    window.__paygate.raw.push({{origin: event.origin, type: data.type, tag: data.tag || null}});
  }});
  var params = new URLSearchParams(location.search);
  window.__handle = Paygate.mount("#card-element", {{
    clientSecret: params.get("secret"),
    onReady: function () {{ window.__paygate.ready += 1; }},
    onToken: function (token, card) {{ window.__paygate.tokens.push({{token: token, card: card}}); }},
    onError: function (error) {{ window.__paygate.errors.push(error); }}
  }});
</script>
</body></html>
"""

# Served by the stranger origin: pretends to be the gateway frame.
_FOREIGN_POSTER = """<!doctype html><html><body>
<script>
  var tag = new URLSearchParams(location.search).get("tag");
  var messages = [
    {type: "paygate:token", token: "tok_forged", card: {brand: "visa", last4: "0000"}, tag: tag},
    {type: "paygate:error", code: "forged", message: "forged", tag: tag},
    {type: "paygate:resize", height: 1, tag: tag},
    {type: "paygate:ready", tag: tag}
  ];
  messages.forEach(function (m) { parent.postMessage(m, "*"); });
</script></body></html>
"""


def _merchant_app(sites_box: dict[str, Sites]) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    async def checkout_page(_: Request) -> HTMLResponse:
        return HTMLResponse(_MERCHANT_PAGE.format(gateway=sites_box["sites"].gateway))

    async def foreign_poster(_: Request) -> HTMLResponse:
        return HTMLResponse(_FOREIGN_POSTER)

    async def favicon(_: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/shop/checkout", checkout_page),
            Route("/foreign-poster", foreign_poster),
            Route("/favicon.ico", favicon),
        ]
    )


@pytest.fixture(scope="session")
def checkout_sites() -> Iterator[Sites]:
    from paygate_server.cards import generate_private_key, new_kid

    sites_box: dict[str, Sites] = {}
    gateway = ServerThread(_gateway_app(sites_box, generate_private_key(2048), new_kid()), [_listening_socket()])
    # The merchant and the stranger are one app on two ports: two origins.
    shops = ServerThread(_merchant_app(sites_box), [_listening_socket(), _listening_socket()])
    gateway.start()
    try:
        shops.start()
        try:
            merchant_port, stranger_port = shops.ports
            sites_box["sites"] = Sites(
                gateway=f"http://127.0.0.1:{gateway.ports[0]}",
                merchant=f"http://localhost:{merchant_port}",
                stranger=f"http://localhost:{stranger_port}",
                checkouts={},
                token_requests=[],
            )
            yield sites_box["sites"]
        finally:
            shops.stop()
    finally:
        gateway.stop()


@pytest.fixture
def page_factory(browser: Any) -> Iterator[Any]:
    """New pages in fresh browser contexts (no shared storage), closed after the test."""
    contexts: list[Any] = []

    def new_page(width: int = 1280, height: int = 900, **kwargs: Any) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, **kwargs)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield new_page
    for context in contexts:
        context.close()


def console_of(page: Any) -> list[str]:
    """The page's console messages, as they are logged (to check that no card data is)."""
    lines: list[str] = []
    page.on("console", lambda message: lines.append(message.text))
    return lines
