"""``paygate demo`` across a restart: one merchant, one shop database, one admin password;
a shop that comes back on another port keeps working (origin and webhook endpoint follow)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.examples.demo_process import running_demo
from tests.support.console_login import login_token
from tests.support.logscan import leaks_in


def _page_config(html: str) -> dict[str, object]:
    match = re.search(r'<script type="application/json" id="order-config">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def _console_login(console: str, banner: str) -> tuple[str, str]:
    """Log in to the console with the demo operator the banner prints; returns the login."""
    match = re.search(r"operator console: (\S+) / (\S+)\)", banner)
    assert match is not None, banner
    email, password = match.groups()
    with httpx.Client(base_url=console, headers={"origin": console}) as client:
        token = login_token(client.get("/login").text)  # the login page's cookie and token, as a browser
        assert client.post("/login", data={"email": email, "password": password, "csrf": token}).status_code == 303
        home = client.get("/")
        assert home.status_code == 200 and email in home.text and "admin" in home.text
    return email, password


def test_the_demo_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "paygate-data"
    with running_demo(data_dir) as first:
        creds = first.credentials()
        assert creds["webhookUrl"] == f"{first.shop}/webhooks/paygate"
        password = re.search(r"\(password: (\S+)\)", first.banner)
        assert password is not None
        with httpx.Client(base_url=first.shop, headers={"origin": first.shop}) as shop:
            shop.post("/cart/add", data={"sku": "tw-mug-12"})
            order_path = shop.post("/checkout").headers["location"]
            assert "Order #1001" in shop.get(order_path).text
        operator = _console_login(first.console, first.banner)
    assert (data_dir / "demo-merchant.json").stat().st_mode & 0o777 == 0o600
    assert (data_dir / "demo-operator.json").stat().st_mode & 0o777 == 0o600
    # Each service's log got its startup line, the gateway's a line per request; none
    # holds a card number or a secret.
    services = ("gateway", "simulator", "storefront", "console")
    logs = {name: (data_dir / "logs" / f"{name}.log").read_text() for name in services}
    assert "paygate serve starting" in logs["gateway"] and "paygate.request" in logs["gateway"]
    assert "paygate simulator starting" in logs["simulator"] and "storefront starting" in logs["storefront"]
    assert "paygate console starting" in logs["console"]
    assert not [line for text in logs.values() for line in text.splitlines() if leaks_in(line)]

    with running_demo(data_dir) as second:
        again = second.credentials()
        assert (again["merchantId"], again["apiKey"]) == (creds["merchantId"], creds["apiKey"])
        assert f"(password: {password.group(1)})" in second.banner
        assert _console_login(second.console, second.banner) == operator  # the same demo admin
        # The shop came back on another port: its webhook endpoint moved with it.
        assert second.shop != first.shop
        with second.sdk() as client:
            endpoints = list(client.webhook_endpoints.list())
            assert [e.url for e in endpoints] == [f"{second.shop}/webhooks/paygate"]
            assert len(list(client.payment_intents.list(limit=10))) == 1
        with httpx.Client(base_url=second.shop) as shop:
            page = shop.get(order_path)
            assert "Order #1001" in page.text
            secret = _page_config(page.text)["clientSecret"]
        # … and its new origin may frame the card form.
        frame = httpx.get(f"{second.gateway}/checkout/v1/frame",
                          params={"clientSecret": secret, "parentOrigin": second.shop})
        assert frame.status_code == 200
        assert second.shop in frame.headers["content-security-policy"]
