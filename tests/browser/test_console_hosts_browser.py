"""The console's name, its https cookie and DNS rebinding, in real Chromium against a real
``paygate console`` process behind a real TLS-terminating proxy (tests/support/tls_proxy.py):

* ``https://console.paygate.test:<proxy>`` is the console's public origin
  (``PAYGATE_CONSOLE_ORIGIN``); Chromium resolves that name to 127.0.0.1 by
  ``--host-resolver-rules``, the proxy's self-signed certificate is accepted for the test;
* ``rebound.paygate.test`` also resolves to 127.0.0.1, as a hostile page's name does once
  it has rebound its DNS: Chromium sends it as ``Host`` straight to the console's port.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from paygate_server.console.security import HSTS, LOGIN_COOKIE_NAME, SECURE_SESSION_COOKIE
from paygate_server.procs import ServiceProcess, console_command
from tests.browser.conftest import launch_browser
from tests.browser.test_console_browser import ConsoleSite, _off_thread
from tests.server.console.conftest import PASSWORD
from tests.support.databases import migrated_database_url
from tests.support.processes import gateway_env
from tests.support.tls_proxy import TlsProxy

PUBLIC_NAME = "console.paygate.test"
REBOUND_NAME = "rebound.paygate.test"


@dataclass
class ProxiedConsole:
    public_url: str  # through the TLS proxy
    console_port: int  # the console's own plain-http port
    site: ConsoleSite


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser((f"--host-resolver-rules=MAP {PUBLIC_NAME} 127.0.0.1, MAP {REBOUND_NAME} 127.0.0.1",))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedConsole]:
    data_dir = tmp_path_factory.mktemp("console")
    url = _off_thread(lambda: migrated_database_url("sqlite", data_dir))
    proxy = TlsProxy(PUBLIC_NAME, data_dir)
    public_url = f"https://{PUBLIC_NAME}:{proxy.port}"
    try:
        with ServiceProcess(console_command, log_path=data_dir / "console.log",
                            env=gateway_env(url, data_dir, PAYGATE_CONSOLE_ORIGIN=public_url)) as proc:
            proxy.start(proc.port)
            yield ProxiedConsole(public_url, proc.port, ConsoleSite(public_url, url, public_url))
    finally:
        proxy.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(ignore_https_errors=True)  # the proxy's self-signed certificate
    try:
        yield context.new_page()
    finally:
        context.close()


def test_over_the_https_origin_the_cookie_is_host_prefixed_and_login_works(page: Any,
                                                                         proxied: ProxiedConsole) -> None:
    email = proxied.site.operator("support")
    first = page.goto(proxied.public_url + "/login")
    assert first.status == 200 and first.headers["strict-transport-security"] == HSTS
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(proxied.public_url + "/")
    assert page.locator(".email").inner_text() == email
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == [SECURE_SESSION_COOKIE]  # nothing under the plain name
    [cookie] = cookies
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["domain"]) == (
        True, True, "Strict", "/", PUBLIC_NAME)  # host-only: what __Host- makes the browser insist on
    page.goto(proxied.public_url + "/activity")
    assert page.locator(".email").inner_text() == email  # the browser sends it back
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(proxied.public_url + "/login")
    # The session cookie cleared (the Secure deletion matched the __Host- cookie); the login
    # page it landed on set its form's own cookie, which opens nothing.
    assert [c["name"] for c in page.context.cookies()] == ["__Host-" + LOGIN_COOKIE_NAME]


def test_a_rebound_name_gets_the_wrong_address_page_not_the_login_form(page: Any, proxied: ProxiedConsole) -> None:
    response = page.goto(f"http://{REBOUND_NAME}:{proxied.console_port}/login")
    assert response.status == 421
    assert page.get_by_role("heading").inner_text() == "Wrong address"
    assert page.get_by_label("Password").count() == 0
    # The console's own name on its plain port is served (a proxy may forward so), but a
    # login there is not from the public origin.
    direct = f"http://{PUBLIC_NAME}:{proxied.console_port}"
    assert page.goto(direct + "/login").status == 200
    page.get_by_label("Email").fill(proxied.site.operator("viewer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert "not sent from the console" in page.content() and page.context.cookies() == []
