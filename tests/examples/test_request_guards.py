"""The storefront's request guards (hardening #15.12): the Origin check on every
state-changing POST, admin login throttling, logout that ends the session on the server,
and form bodies read no further than 16 KiB."""
from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.exceptions import HTTPException
from storefront.web import read_body

from tests.examples.conftest import ADMIN_PASSWORD, SHOP, ShopHarness
from tests.support.cut_off import cut_off_request


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None
    return match.group(1)


# --- Origin --------------------------------------------------------------------------------

POSTS: list[tuple[str, dict[str, Any]]] = [
    ("/cart/add", {"data": {"sku": "tw-mug-12"}}),
    ("/cart/update", {"data": {"sku": "tw-mug-12", "quantity": "3"}}),
    ("/checkout", {}),
    ("/admin/login", {"data": {"password": ADMIN_PASSWORD}}),
    ("/admin/logout", {"data": {"csrf": "x"}}),
    ("/admin/orders/ord_abcdefghijkl/refund", {"data": {"amount": "1.00"}}),
    ("/orders/ord_abcdefghijkl/pay", {"json": {"token": "tok_ok_0123456789"}}),
]
NOT_THE_SHOP = [
    {},  # neither Origin nor Referer: no proof of where it came from
    {"origin": "https://evil.example"},
    {"origin": "null"},  # sandboxed frames, data: URLs
    {"origin": "https://shop.test"},  # right host, wrong scheme
    {"origin": "http://shop.test:8443"},  # right host, wrong port
    {"referer": "https://evil.example/shop.test/cart"},
    {"origin": "https://evil.example", "referer": f"{SHOP}/cart"},  # Origin wins
]


@pytest.mark.parametrize("headers", NOT_THE_SHOP, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()) or "none")
async def test_every_state_changing_post_needs_the_shops_origin(shop: ShopHarness, headers: dict[str, str]) -> None:
    async with shop.client(**headers) as stranger:
        for path, body in POSTS:
            r = await stranger.post(path, **body)
            assert r.status_code == 403, (path, r.status_code, r.text)
            assert "set-cookie" not in r.headers, path
    assert shop.gateway.requests == []


async def test_the_shops_own_origin_or_referer_is_accepted(shop: ShopHarness) -> None:
    async with shop.client(origin=SHOP) as page:
        assert (await page.post("/cart/add", data={"sku": "tw-mug-12"})).status_code == 303
    # Some privacy settings strip Origin but keep a same-origin Referer.
    async with shop.client(referer=f"{SHOP}/cart") as page:
        r = await page.post("/cart/add", data={"sku": "tw-mug-12"})
        assert r.status_code == 303 and "tw_cart=" in r.headers["set-cookie"]


async def test_webhooks_need_no_origin_their_signature_is_the_proof(shop: ShopHarness) -> None:
    async with shop.client() as gateway:
        r = await gateway.post("/webhooks/paygate", content=b"{}", headers={"webhook-id": "msg_1"})
    assert r.status_code == 400  # judged by its signature, not refused as cross-site


# --- login throttling ------------------------------------------------------------------------


async def test_five_wrong_passwords_then_429_with_retry_after(shop: ShopHarness) -> None:
    async with shop.client(peer="203.0.113.7", origin=SHOP) as attacker:
        for _ in range(5):
            assert (await attacker.post("/admin/login", data={"password": "guess"})).status_code == 401
        r = await attacker.post("/admin/login", data={"password": "guess"})
        assert r.status_code == 429
        assert 0 < int(r.headers["retry-after"]) <= 15 * 60
        assert "Too many wrong passwords" in r.text and 'name="password"' in r.text
        # Even the right password is refused now: otherwise guessing would just go on.
        r = await attacker.post("/admin/login", data={"password": ADMIN_PASSWORD})
        assert r.status_code == 429 and "set-cookie" not in r.headers
    # Per client: the shop owner on another address logs in as usual.
    async with shop.client(peer="198.51.100.20", origin=SHOP) as owner:
        assert (await owner.post("/admin/login", data={"password": ADMIN_PASSWORD})).status_code == 303


async def test_an_ipv6_client_is_one_client_across_its_64(shop: ShopHarness) -> None:
    for n in range(6):
        async with shop.client(peer=f"2001:db8:1:2::{n + 1:x}", origin=SHOP) as attacker:
            r = await attacker.post("/admin/login", data={"password": "guess"})
        assert r.status_code == (429 if n == 5 else 401)


async def test_a_right_password_forgives_earlier_mistakes(shop: ShopHarness) -> None:
    async with shop.client(peer="192.0.2.9", origin=SHOP) as owner:
        for _ in range(4):
            assert (await owner.post("/admin/login", data={"password": "typo"})).status_code == 401
        assert (await owner.post("/admin/login", data={"password": ADMIN_PASSWORD})).status_code == 303
        for _ in range(5):
            assert (await owner.post("/admin/login", data={"password": "typo"})).status_code == 401


def test_the_window_slides(shop_store: Any) -> None:
    from storefront.admin_auth import LOGIN_WINDOW_S

    for t in (0, 100, 200, 300, 400):
        assert shop_store.begin_login("c", now=1_000_000 + t).allowed
    refused = shop_store.begin_login("c", now=1_000_000 + 500)
    assert not refused.allowed and refused.retry_after_s == LOGIN_WINDOW_S - 500
    # The first failure leaves the window: one more attempt, and only one.
    assert shop_store.begin_login("c", now=1_000_000 + LOGIN_WINDOW_S + 1).allowed
    assert not shop_store.begin_login("c", now=1_000_000 + LOGIN_WINDOW_S + 2).allowed


@pytest.fixture
def shop_store(tmp_path: Any) -> Any:
    from storefront.admin_auth import AdminAuthStore

    return AdminAuthStore(tmp_path / "auth.db")


# --- logout ----------------------------------------------------------------------------------


async def test_logout_ends_the_session_so_a_copied_cookie_opens_nothing(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    await shop.login()
    stolen = shop.http.cookies["tw_admin"]
    page = await shop.http.get("/admin")
    r = await shop.http.post("/admin/logout", data={"csrf": _csrf(page.text)})
    assert r.status_code == 303
    async with shop.client(origin=SHOP) as thief:
        thief.cookies.set("tw_admin", stolen, domain="shop.test", path="/admin")
        assert 'name="password"' in (await thief.get("/admin")).text
        r = await thief.get(f"/admin/orders/{order_id}")
        assert (r.status_code, r.headers["location"]) == (303, "/admin")
        assert (await thief.get(f"/admin/api/orders/{order_id}")).status_code == 401
        r = await thief.post(f"/admin/orders/{order_id}/refund", data={"csrf": _csrf(page.text), "amount": "1.00"})
        assert r.status_code == 403


async def test_sessions_are_stored_hashed(shop: ShopHarness) -> None:
    await shop.login()
    from storefront.cookies import CookieSigner

    data = CookieSigner(shop.config.secret_key).unsign("admin", shop.http.cookies["tw_admin"])
    assert data is not None and len(data["sid"]) >= 40
    assert data["sid"].encode() not in shop.config.database_path.read_bytes()
    wal = shop.config.database_path.with_name("storefront.db-wal")
    assert not wal.exists() or data["sid"].encode() not in wal.read_bytes()


# --- request bodies ----------------------------------------------------------------------------


class EndlessBody:
    """An ASGI ``receive`` that sends 1 KiB chunks for as long as it is asked (up to 64 MiB),
    counting what the application took."""

    def __init__(self) -> None:
        self.chunks = 0

    async def __call__(self) -> dict[str, Any]:
        self.chunks += 1
        if self.chunks > 64 * 1024:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": b"a" * 1024, "more_body": True}


async def _call(shop: ShopHarness, method: str, path: str, headers: dict[str, str],
                receive: Any) -> tuple[int, dict[str, str]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "server": ("shop.test", 80), "client": ("127.0.0.1", 5000),
             "headers": [(k.encode(), v.encode()) for k, v in {"host": "shop.test", "origin": SHOP, **headers}.items()]}
    await shop.app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}


@pytest.mark.parametrize("path", ["/cart/add", "/admin/login", "/orders/{order}/pay"])
async def test_a_body_over_16_kib_is_refused_without_reading_the_rest(shop: ShopHarness, path: str) -> None:
    body = EndlessBody()
    kind = "application/json" if path.endswith("/pay") else "application/x-www-form-urlencoded"
    if "{order}" in path:
        path = path.format(order=await shop.place_order())
    status, headers = await _call(shop, "POST", path, {"content-type": kind, "transfer-encoding": "chunked"}, body)
    assert status == 413 and headers["connection"] == "close"
    assert body.chunks <= 17  # 16 KiB and one chunk past it, not the 64 MiB on offer
    # A declared length over the limit is refused before a byte is read.
    body = EndlessBody()
    status, _ = await _call(shop, "POST", path, {"content-type": kind, "content-length": str(64 << 20)}, body)
    assert status == 413 and body.chunks == 0


async def test_a_16_kib_form_is_still_read(shop: ShopHarness) -> None:
    filler = "x" * (16 * 1024 - len("sku=tw-mug-12&pad="))
    r = await shop.http.post("/cart/add", content=f"sku=tw-mug-12&pad={filler}",
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"] == "/cart"
    assert "Stoneware Mug" in (await shop.http.get("/cart")).text


async def test_the_cart_cookie_is_secure_over_https(shop: ShopHarness) -> None:
    # Once: Secure only on the admin's cookie, so a plain-http request on the shop's name
    # (a downgraded link, an attacker on the network) carried the signed cart.
    transport = httpx.ASGITransport(app=shop.app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://shop.test",
                                 headers={"origin": "https://shop.test"}) as page:
        for path, data in (("/cart/add", {"sku": "tw-mug-12"}), ("/cart/update", {"sku": "tw-mug-12", "quantity": "2"})):
            r = await page.post(path, data=data)
            assert r.status_code == 303, (path, r.text)
            attributes = [a.strip().lower() for a in r.headers["set-cookie"].split(";")]
            assert attributes[0].startswith("tw_cart=") and "secure" in attributes, (path, attributes)
    async with shop.client(origin=SHOP) as plain:  # the demo's plain http keeps working
        r = await plain.post("/cart/add", data={"sku": "tw-mug-12"})
        assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()


async def test_a_csrf_token_of_any_text_is_refused_with_403_not_a_crash(shop: ShopHarness) -> None:
    """Once: a posted token holding non-ASCII text reached hmac.compare_digest as str,
    which raises TypeError for it (a 500 instead of the refusal)."""
    order_id = await shop.place_order()
    await shop.login()
    for token in ("\u0080", "é" * 64, "🙂"):
        r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={"csrf": token, "amount": "1.00"})
        assert r.status_code == 403, (token, r.status_code)


async def test_a_body_cut_off_is_a_client_error_not_a_500() -> None:
    """A client leaving mid-body surfaced as Starlette's ClientDisconnect out of the body
    read: a 500 with its traceback in the shop's log. Now a 400 (answered to no one)."""
    with pytest.raises(HTTPException) as refused:
        await read_body(cut_off_request("/checkout"), 16 * 1024)
    assert refused.value.status_code == 400
