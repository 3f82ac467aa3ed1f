"""The operator console in real Chromium against a real ``paygate console`` process
(SQLite): logging in, the lockout after ten wrong passwords, the session cookie's flags,
logout revoking the session, CSRF and Origin refusals, and a viewer's missing controls."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from paygate_server.console.accounts import Accounts
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from tests.browser.conftest import ServerThread, _listening_socket
from tests.server.console.conftest import CHEAP, PASSWORD, new_email
from tests.support.databases import migrated_database_url
from tests.support.processes import gateway_env

REFUSED = "Wrong email or password"
T = TypeVar("T")


def _off_thread(fn: Callable[[], T]) -> T:
    """Run blocking set-up (``asyncio.run`` inside) on another thread: Playwright's sync API
    keeps an event loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


@dataclass
class ConsoleSite:
    url: str
    database_url: str
    stranger_url: str  # another origin, serving a form that posts to the console

    def operator(self, role: str) -> str:
        email = new_email(role)

        async def run() -> None:
            db = create_database(self.database_url)
            try:
                await Accounts(db, CHEAP).create(email, role, PASSWORD)
            finally:
                await db.dispose()
        _off_thread(lambda: asyncio.run(run()))
        return email

    def operator_exists(self, email: str) -> bool:
        async def run() -> bool:
            db = create_database(self.database_url)
            try:
                return await Accounts(db, CHEAP).find(email) is not None
            finally:
                await db.dispose()
        return _off_thread(lambda: asyncio.run(run()))


def _stranger(console_url: str) -> Starlette:
    async def form(request: Any) -> HTMLResponse:
        return HTMLResponse(f"""<!doctype html><form method="post" action="{console_url}/operators">
<input name="email" value="{request.query_params.get('email', '')}"><input name="role" value="admin">
<button type="submit">win a prize</button></form>""")
    return Starlette(routes=[Route("/", form)])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleSite]:
    data_dir = tmp_path_factory.mktemp("console")
    url = _off_thread(lambda: migrated_database_url("sqlite", data_dir))
    with ServiceProcess(console_command, log_path=data_dir / "console.log",
                        env=gateway_env(url, data_dir)) as proc:
        stranger = ServerThread(_stranger(proc.base_url), [_listening_socket()])
        stranger.start()
        try:
            yield ConsoleSite(proc.base_url, url, f"http://localhost:{stranger.ports[0]}")
        finally:
            stranger.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def _log_in(page: Any, site: ConsoleSite, email: str, password: str = PASSWORD) -> None:
    page.goto(site.url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_log_in_cookie_flags_and_logout_revokes(browser: Any, page: Any, site: ConsoleSite) -> None:
    email = site.operator("support")
    page.goto(site.url + "/")
    assert page.url == site.url + "/login"
    _log_in(page, site, email)
    page.wait_for_url(site.url + "/")
    assert page.locator(".email").inner_text() == email and page.locator(".role").inner_text() == "support"
    [cookie] = [c for c in page.context.cookies() if c["name"] == "paygate_console"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script sees it
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(site.url + "/login")
    replay = browser.new_context()
    try:
        replay.add_cookies([{**cookie}])
        old = replay.new_page()
        old.goto(site.url + "/activity")
        assert old.url == site.url + "/login"  # the old cookie is worth nothing
    finally:
        replay.close()


def test_back_after_logout_shows_no_page_kept_by_the_browser(page: Any, site: ConsoleSite) -> None:
    """htmx's search pushes history entries; it must keep no copy of the pages (they hold the
    operator, a CSRF token and payments) for Back to show once the session has ended."""
    email = site.operator("support")
    _log_in(page, site, email)
    page.wait_for_url(site.url + "/")
    page.goto(site.url + "/payments")
    for status in ("failed", "succeeded"):  # two searches by htmx: two pushed entries
        page.get_by_label("Status").select_option(status)
        page.get_by_role("button", name="Search").click()
        page.wait_for_url(f"**status={status}**")
    assert page.evaluate("sessionStorage.getItem('htmx-history-cache')") is None
    elsewhere = page.context.new_page()  # the session ends in another tab
    elsewhere.goto(site.url + "/activity")
    elsewhere.get_by_role("button", name="Log out").click()
    elsewhere.wait_for_url(site.url + "/login")
    page.go_back()
    page.wait_for_url(site.url + "/login")
    assert email not in page.content()


def test_ten_wrong_passwords_lock_the_account(page: Any, site: ConsoleSite) -> None:
    email = site.operator("viewer")
    for _ in range(10):
        _log_in(page, site, email, "not the password")
        assert REFUSED in page.get_by_role("alert").inner_text()
    _log_in(page, site, email)  # the right password, refused while locked
    assert REFUSED in page.get_by_role("alert").inner_text()
    assert page.url == site.url + "/login"
    _log_in(page, site, "nobody-" + email)  # an unknown email reads the same
    assert REFUSED in page.get_by_role("alert").inner_text()


def test_a_post_without_the_csrf_token_is_refused(page: Any, site: ConsoleSite) -> None:
    _log_in(page, site, site.operator("admin"))
    page.wait_for_url(site.url + "/")
    page.goto(site.url + "/operators")
    victim = new_email("csrf")
    page.get_by_label("Email", exact=True).fill(victim)
    page.locator("form.stacked input[name=csrf]").evaluate("input => input.remove()")
    page.get_by_role("button", name="Create").click()
    assert "reload the page" in page.get_by_role("alert").inner_text()
    assert not site.operator_exists(victim)
    page.goto(site.url + "/operators")  # the same form with its token works
    page.get_by_label("Email", exact=True).fill(victim)
    page.get_by_role("button", name="Create").click()
    assert "shown only now" in page.locator(".notice").inner_text()
    assert site.operator_exists(victim)


def test_a_post_from_another_origin_is_refused(page: Any, site: ConsoleSite) -> None:
    _log_in(page, site, site.operator("admin"))
    page.wait_for_url(site.url + "/")
    victim = new_email("xsite")
    page.goto(f"{site.stranger_url}/?email={victim}")
    page.get_by_role("button", name="win a prize").click()
    page.wait_for_url(site.url + "/operators")
    assert "not sent from the console" in page.get_by_role("alert").inner_text()
    assert not site.operator_exists(victim)


def test_a_viewer_has_no_operators_entry_and_its_post_is_refused(page: Any, site: ConsoleSite) -> None:
    _log_in(page, site, site.operator("viewer"))
    page.wait_for_url(site.url + "/")
    nav = page.get_by_role("navigation", name="Console")
    assert nav.get_by_role("link", name="Activity").is_visible()
    assert nav.get_by_role("link", name="Operators").count() == 0
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    victim = new_email("viewer-post")
    response = page.request.post(site.url + "/operators", form={"csrf": token, "email": victim, "role": "admin"},
                                 headers={"origin": site.url})
    assert response.status == 403 and "role cannot" in response.text()
    assert not site.operator_exists(victim)
    page.goto(site.url + "/operators")
    assert "cannot open this page" in page.get_by_role("alert").inner_text()


def test_pages_fit_a_390px_phone_and_work_with_the_keyboard(browser: Any, site: ConsoleSite) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        _log_in(page, site, site.operator("admin"))
        page.wait_for_url(site.url + "/")
        for path in ("/", "/activity", "/operators"):
            page.goto(site.url + path)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    finally:
        context.close()
