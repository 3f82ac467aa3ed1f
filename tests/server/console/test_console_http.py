"""The console app over HTTP (httpx → ASGI, its real lifespan), SQLite and PostgreSQL:
login and its refusals, cookie flags, sessions' expiry, CSRF and Origin, security
headers, roles on pages and on POSTs, operators' management, the activity page, hostile
forms, and that the console process starts none of the gateway's background work."""
from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from paygate_server.cards.pan import contains_card_number
from paygate_server.console.accounts import LOGIN_REFUSED, Accounts
from paygate_server.console.roles import PERMISSIONS, ROLES, can
from paygate_server.console.security import (
    CONTENT_SECURITY_POLICY,
    HSTS,
    LOGIN_COOKIE_NAME,
    SECURE_SESSION_COOKIE,
    CsrfTokens,
)
from paygate_server.console.sessions import COOKIE_NAME
from paygate_server.crypto import MasterKey
from paygate_server.storage.operators import recent_failures
from paygate_server.storage.schema_console import operators
from tests.server.console.conftest import (
    CHEAP,
    PASSWORD,
    InProcessConsole,
    new_email,
    running_console,
)
from tests.support.app import InProcessGateway
from tests.support.app import test_settings as make_settings
from tests.support.clock import fake_clock
from tests.support.console_login import login_token

SECURE_COOKIE = SECURE_SESSION_COOKIE
SECURE_LOGIN_COOKIE = "__Host-" + LOGIN_COOKIE_NAME
assert SECURE_COOKIE == "__Host-paygate_console"


async def _log_in_behind_https(con: InProcessConsole, email: str) -> httpx.Response:
    """The login form behind a TLS proxy: its cookie is Secure, which httpx keeps from a
    plain-http URL, so it is passed on by hand (as the proxy passes the browser's)."""
    page = await con.http.get("/login")
    cookie = _cookie_header(page.headers.get_list("set-cookie"), SECURE_LOGIN_COOKIE).split(";")[0]
    return await con.http.post("/login", data={"email": email, "password": PASSWORD, "csrf": login_token(page.text)},
                               headers={"origin": "https://console.example.com", "cookie": cookie})


def _cookie_header(response_headers: list[str], name: str = COOKIE_NAME) -> str:
    [cookie] = [h for h in response_headers if h.startswith(name + "=")]
    return cookie


async def test_healthz_static_and_headers(con: InProcessConsole) -> None:
    health = await con.http.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    login = await con.http.get("/login")
    assert login.status_code == 200 and "Log in" in login.text
    for response in (health, login):
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cross-origin-opener-policy"] == "same-origin"
        assert response.headers["cross-origin-resource-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
    for path in ("/static/console.css", "/static/vendor/htmx.min.js"):
        static = await con.http.get(path)
        assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"
        assert static.headers["x-content-type-options"] == "nosniff"
        assert static.headers["cross-origin-resource-policy"] == "same-origin"
    assert "style=" not in login.text and "<style" not in login.text and "<script>" not in login.text
    missing = await con.http.get("/nowhere")
    assert missing.status_code == 404 and "no such page" in missing.text


async def test_every_signed_in_page_carries_the_headers_and_is_not_stored(con: InProcessConsole) -> None:
    """Pages show the operator, CSRF tokens and payments: no-store, and the same headers as
    the login page, on each page of the navigation and the overview's JSON."""
    await con.log_in(await con.operator("admin"))
    for path in ("/", "/overview.json", "/payments", "/reconciliation", "/merchants", "/activity", "/operators"):
        response = await con.http.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "no-store", path
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        for name, value in (("x-frame-options", "DENY"), ("x-content-type-options", "nosniff"),
                            ("referrer-policy", "same-origin"), ("cross-origin-opener-policy", "same-origin"),
                            ("cross-origin-resource-policy", "same-origin")):
            assert response.headers[name] == value, (path, name)
        assert "strict-transport-security" not in response.headers, path  # plain http


async def test_an_error_page_under_static_is_not_cacheable(con: InProcessConsole) -> None:
    """A missing static file is answered by the console's error page, which names the
    signed-in operator and carries their CSRF token: no-store, as every page."""
    email = await con.operator("admin")
    await con.log_in(email)
    for path in ("/static/nope.css", "/static/vendor/"):
        missing = await con.http.get(path)
        assert missing.status_code == 404 and email in missing.text, path
        assert missing.headers["cache-control"] == "no-store", path


async def test_pages_need_a_session(con: InProcessConsole) -> None:
    for path in ("/", "/activity", "/operators"):
        response = await con.http.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    forged = await con.http.get("/", headers={"cookie": COOKIE_NAME + "=" + "A" * 43})
    assert forged.status_code == 303
    junk = await con.http.get("/", headers={"cookie": COOKIE_NAME + "=not-base64-at-all!"})
    assert junk.status_code == 303


async def test_login_refusals_read_the_same(con: InProcessConsole) -> None:
    email = await con.operator("viewer")
    wrong = await con.log_in(email, "wrong password!")
    unknown = await con.log_in("nobody@example.com", PASSWORD)
    for response in (wrong, unknown):
        assert response.status_code == 401 and LOGIN_REFUSED.replace(",", "") in response.text.replace(",", "")
        assert COOKIE_NAME not in response.headers.get("set-cookie", "")
    empty = await con.http.post("/login", data={"email": "", "password": "", "csrf": await con.login_token()},
                                headers={"origin": con.origin})
    assert empty.status_code == 400 and "Enter your email" in empty.text
    assert PASSWORD not in wrong.text


async def test_the_login_form_needs_its_own_browsers_csrf_token(database_url: str, tmp_path: Path) -> None:
    """SPEC §12: every state-changing form carries a CSRF token — the login form too (login
    CSRF: a page signing the operator's browser in to an account of the attacker's). Once
    the login form was checked by Origin alone. Its token is bound to the login cookie the
    login page sets; a form without it, or with another browser's, is refused before the
    password is checked: no session, no counted failure."""
    settings = make_settings(database_url, tmp_path)
    async with running_console(settings) as con, running_console(settings) as other:
        email = await con.operator("viewer")
        operator = await con.console.accounts.find(email)
        assert operator is not None
        page = await con.http.get("/login")
        [set_cookie] = [c for c in page.headers.get_list("set-cookie") if c.startswith(LOGIN_COOKIE_NAME + "=")]
        attributes = {part.strip().lower() for part in set_cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert not any(a.startswith(("max-age", "expires", "domain")) for a in attributes)
        theirs = await other.login_token()
        for token in (None, "", theirs, "0" * 64, "é"):
            data = {"email": email, "password": PASSWORD} | ({} if token is None else {"csrf": token})
            refused = await con.http.post("/login", data=data, headers={"origin": con.origin})
            assert refused.status_code == 403 and "login form has expired" in refused.text, token
            assert COOKIE_NAME + "=" not in refused.headers.get("set-cookie", "")  # no session cookie
        con.http.cookies.clear()  # the right token, but no cookie it belongs to
        cookieless = await con.http.post("/login", data={"email": email, "password": PASSWORD,
                                                          "csrf": login_token(page.text)}, headers={"origin": con.origin})
        assert cookieless.status_code == 403
        async with con.console.gateway.db.read() as conn:
            assert await recent_failures(conn, operator.id, after=0, limit=10) == []
        assert (await con.http.get("/")).status_code == 303  # not signed in
        # The refusal's form carries a fresh cookie and token: sent as it is, it logs in.
        retry = login_token(cookieless.text)
        done = await con.http.post("/login", data={"email": email, "password": PASSWORD, "csrf": retry},
                                   headers={"origin": con.origin})
        assert done.status_code == 303 and (await con.http.get("/")).status_code == 200
        cleared = [c for c in done.headers.get_list("set-cookie") if c.startswith(LOGIN_COOKIE_NAME + "=")]
        assert cleared and "max-age=0" in cleared[0].lower()  # the next login page makes a new one


async def test_login_sets_a_strict_httponly_cookie_and_records_it(con: InProcessConsole) -> None:
    email = await con.operator("support")
    response = await con.log_in(email)
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cookie = _cookie_header(response.headers.get_list("set-cookie")).lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http (loopback): a Secure cookie would never come back
    home = await con.http.get("/")
    assert home.status_code == 200 and email in home.text and "support" in home.text
    activity = await con.http.get("/activity")
    assert "login" in activity.text and "203.0.113.7" in activity.text


async def test_over_https_the_cookie_is_secure_host_prefixed_and_hsts_is_sent(database_url: str,
                                                                             tmp_path: Path) -> None:
    async with running_console(make_settings(database_url, tmp_path), base_url="https://localhost") as con:
        email = await con.operator("viewer")
        response = await con.log_in(email)
        assert response.status_code == 303
        assert not [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE_NAME + "=")]
        cookie = _cookie_header(response.headers.get_list("set-cookie"), SECURE_COOKIE).lower()
        assert "secure" in cookie and "path=/" in cookie and "domain" not in cookie  # what __Host- requires
        assert response.headers["strict-transport-security"] == HSTS
        home = await con.http.get("/")
        assert home.status_code == 200 and email in home.text
        assert home.headers["strict-transport-security"] == HSTS


async def test_over_plain_http_no_hsts(con: InProcessConsole) -> None:
    for path in ("/login", "/healthz", "/nowhere"):
        assert "strict-transport-security" not in (await con.http.get(path)).headers, path


async def test_behind_an_https_origin_the_cookie_is_host_prefixed_and_a_plain_one_is_ignored(
        database_url: str, tmp_path: Path) -> None:
    """The proxy speaks plain http to the console; the configured origin says https. A
    cookie under the plain name (set by a sibling sub-domain or a plain-http page: cookie
    tossing) opens nothing there, even one holding a live session id."""
    settings = make_settings(database_url, tmp_path, console_origin="https://console.example.com")
    async with running_console(settings, base_url="http://console.example.com") as con:
        email = await con.operator("viewer")
        here = await con.log_in(email)
        assert here.status_code == 403  # the request's own origin is not the configured one
        response = await _log_in_behind_https(con, email)
        assert response.status_code == 303
        assert response.headers["strict-transport-security"] == HSTS
        cookie = _cookie_header(response.headers.get_list("set-cookie"), SECURE_COOKIE)
        assert "secure" in cookie.lower()
        # httpx sends no Secure cookie to a plain-http URL; the proxy in front would pass the browser's on.
        value = cookie.split(";")[0].split("=", 1)[1]
        con.http.cookies.clear()
        signed_in = await con.http.get("/activity", headers={"cookie": f"{SECURE_COOKIE}={value}"})
        assert signed_in.status_code == 200 and email in signed_in.text
        tossed = await con.http.get("/activity", headers={"cookie": f"{COOKIE_NAME}={value}"})
        assert (tossed.status_code, tossed.headers["location"]) == (303, "/login")
        cleared = _cookie_header(tossed.headers.get_list("set-cookie"), SECURE_COOKIE).lower()
        assert "max-age=0" in cleared and "secure" in cleared  # a __Host- cookie is only cleared by a Secure one


@pytest.mark.parametrize("configured", ["HTTPS://Console.Example.com:443/", " https://console.example.com "])
async def test_a_configured_origin_is_read_as_browsers_send_origin(database_url: str, tmp_path: Path,
                                                                   configured: str) -> None:
    """Upper case, the default port, a slash: the browser's Origin is https://console.example.com.
    Compared as written, every form was refused and the cookie was not Secure."""
    settings = make_settings(database_url, tmp_path, console_origin=configured)
    async with running_console(settings, base_url="http://console.example.com") as con:
        email = await con.operator("viewer")
        response = await _log_in_behind_https(con, email)
        assert response.status_code == 303
        assert "secure" in _cookie_header(response.headers.get_list("set-cookie"), SECURE_COOKIE).lower()
        assert response.headers["strict-transport-security"] == HSTS


@pytest.mark.parametrize("origin", [None, "http://evil.test", "null", "http://127.0.0.1:8084", "http://localhost:8083"])
async def test_post_without_or_from_a_foreign_origin_is_refused(con: InProcessConsole, origin: str | None) -> None:
    email = await con.operator("admin")
    assert (await con.log_in(email)).status_code == 303
    token = await con.csrf()
    headers = {} if origin is None else {"origin": origin}
    for path, data in (("/logout", {"csrf": token}), ("/operators", {"csrf": token, "email": new_email(),
                                                                     "role": "viewer"})):
        response = await con.http.post(path, data=data, headers=headers)
        assert response.status_code == 403 and "not sent from the console" in response.text
    login = await con.http.post("/login", data={"email": email, "password": PASSWORD}, headers=headers)
    assert login.status_code == 403
    assert (await con.http.get("/")).status_code == 200  # still signed in: nothing happened


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(con: InProcessConsole) -> None:
    email = await con.operator("admin")
    await con.log_in(email)
    token = await con.csrf()
    for data in ({}, {"csrf": ""}, {"csrf": "0" * 64}, {"csrf": token[:-1] + ("0" if token[-1] != "0" else "1")}):
        response = await con.http.post("/logout", data=data, headers={"origin": con.origin})
        assert response.status_code == 403 and "reload the page" in response.text
    assert (await con.http.get("/")).status_code == 200
    # Another session's token is no good here either.
    other = await con.operator("admin")
    async with running_console(con.console.settings) as second:
        await second.log_in(other)
        foreign = await second.csrf()
    refused = await con.http.post("/logout", data={"csrf": foreign}, headers={"origin": con.origin})
    assert refused.status_code == 403


def test_no_csrf_token_looks_like_a_card_number() -> None:
    # Written in hex, about 1.5 % of tokens held a Luhn-valid run of digits, and every form
    # holding a card number is refused: those sessions (and login pages) could send no form.
    tokens = CsrfTokens(MasterKey(bytes(range(32))))
    for n in range(2_000):
        for token in (tokens.token(n.to_bytes(16, "big")), tokens.login_token(n.to_bytes(16, "big"))):
            assert len(token) == 64 and token.isalpha() and not contains_card_number(token), token


async def test_a_csrf_field_is_judged_as_a_token_not_as_a_card_number(con: InProcessConsole) -> None:
    # The token is never shown or stored: a wrong one that looks like a card number is a wrong
    # token (403), not the card-number refusal (400) the other fields get.
    await con.log_in(await con.operator("viewer"))
    response = await con.http.post("/logout", data={"csrf": "4242424242424242"}, headers={"origin": con.origin})
    assert response.status_code == 403 and "reload the page" in response.text


async def test_logout_revokes_the_session(con: InProcessConsole) -> None:
    email = await con.operator("viewer")
    await con.log_in(email)
    cookie = con.http.cookies[COOKIE_NAME]
    response = await con.http.post("/logout", data={"csrf": await con.csrf()}, headers={"origin": con.origin})
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    replay = await con.http.get("/", headers={"cookie": f"{COOKIE_NAME}={cookie}"})
    assert (replay.status_code, replay.headers["location"]) == (303, "/login")


async def test_hostile_forms_get_readable_refusals(con: InProcessConsole) -> None:
    email = await con.operator("admin")
    await con.log_in(email)
    token = await con.csrf()
    big = await con.http.post("/operators", data={"csrf": token, "email": "x" * 20_000, "role": "viewer"},
                              headers={"origin": con.origin})
    assert big.status_code == 413 and "larger than" in big.text
    as_json = await con.http.post("/operators", json={"csrf": token}, headers={"origin": con.origin})
    assert as_json.status_code == 415
    not_utf8 = await con.http.post("/operators", content=b"csrf=\xff\xfe", headers={
        "origin": con.origin, "content-type": "application/x-www-form-urlencoded"})
    assert not_utf8.status_code == 400
    many = await con.http.post("/operators", content="&".join(f"f{n}=1" for n in range(200)).encode(), headers={
        "origin": con.origin, "content-type": "application/x-www-form-urlencoded"})
    assert many.status_code == 400
    big_login = await con.http.post("/login", content=b"a=" + b"x" * 40_000, headers={
        "origin": con.origin, "content-type": "application/x-www-form-urlencoded"})
    assert big_login.status_code == 413
    wrong_method = await con.http.delete("/operators")
    assert wrong_method.status_code == 405 and "cannot be used that way" in wrong_method.text


async def test_session_idle_and_absolute_deadlines(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, console_idle_timeout_s=600, console_session_ttl_s=3600)
    async with running_console(settings) as con:
        email = await con.operator("viewer")
        with fake_clock() as clock:
            await con.log_in(email)
            for minute in range(1, 60, 9):  # a request every 9 minutes keeps it alive...
                clock.set_elapsed(minute * 60)
                assert (await con.http.get("/")).status_code == 200, minute
            clock.set_elapsed(3600 + 1)  # ...until 1 h after login, whatever happens
            assert (await con.http.get("/")).status_code == 303
            await con.log_in(email)
            clock.set_elapsed(3600 + 1 + 600 + 61)  # 10 min idle (and the last touch up to a minute old)
            assert (await con.http.get("/")).status_code == 303


async def test_the_overviews_own_refresh_does_not_keep_an_idle_session_alive(database_url: str,
                                                                             tmp_path: Path) -> None:
    """The Overview's script fetches /overview.json every 10 s by itself: an operator who
    signs in and walks away must still be signed out at the idle deadline."""
    settings = make_settings(database_url, tmp_path, console_idle_timeout_s=600, console_session_ttl_s=3600)
    async with running_console(settings) as con:
        email = await con.operator("viewer")
        with fake_clock() as clock:
            await con.log_in(email)
            for minute in range(2, 20, 2):  # the unattended page polls; nobody clicks anything
                clock.set_elapsed(minute * 60)
                polled = await con.http.get("/overview.json")
                if minute * 60 <= 600:
                    assert polled.status_code == 200, minute  # still signed in: the charts are drawn
            assert polled.status_code == 401  # idle since the login: ended
            assert (await con.http.get("/")).status_code == 303


async def test_last_seen_is_written_at_most_once_a_minute(con: InProcessConsole) -> None:
    import base64

    from paygate_server.console.sessions import hash_session_id
    from paygate_server.storage.operators import find_session

    email = await con.operator("viewer")
    with fake_clock() as clock:
        await con.log_in(email)
        session_id = base64.urlsafe_b64decode(con.http.cookies[COOKIE_NAME] + "=")

        async def last_seen() -> int:
            async with con.console.gateway.db.read() as conn:
                row = await find_session(conn, hash_session_id(session_id))
            assert row is not None
            return row.last_seen_at

        login_at = await last_seen()
        clock.set_elapsed(59)
        await con.http.get("/")
        assert await last_seen() == login_at
        clock.set_elapsed(60)
        await con.http.get("/")
        assert await last_seen() == login_at + 60_000_000


async def test_viewer_sees_no_operators_entry_and_its_post_is_refused(con: InProcessConsole) -> None:
    email = await con.operator("viewer")
    await con.log_in(email)
    home = await con.http.get("/")
    assert 'href="/activity"' in home.text and 'href="/operators"' not in home.text
    assert (await con.http.get("/operators")).status_code == 403
    victim = new_email()
    refused = await con.http.post("/operators", data={"csrf": await con.csrf(), "email": victim, "role": "admin"},
                                  headers={"origin": con.origin})
    assert refused.status_code == 403 and "role cannot" in refused.text
    assert await con.console.accounts.find(victim) is None


async def test_admin_creates_an_operator_who_logs_in_then_disables_them(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    async with running_console(settings) as admin, running_console(settings) as colleague:
        await admin.log_in(await admin.operator("admin"))
        assert 'href="/operators"' in (await admin.http.get("/")).text
        email = new_email("new")
        created = await admin.http.post("/operators", data={"csrf": await admin.csrf(), "email": email,
                                                            "role": "support"}, headers={"origin": admin.origin})
        assert created.status_code == 200 and "shown only now" in created.text
        marker = '<code class="secret">'
        password = created.text[created.text.index(marker) + len(marker):].split("<", 1)[0]
        assert len(password) == 20
        assert password not in (await admin.http.get("/operators")).text  # once
        assert (await colleague.log_in(email, password)).status_code == 303
        assert (await colleague.http.get("/")).status_code == 200
        again = await admin.http.post("/operators", data={"csrf": await admin.csrf(), "email": email.upper(),
                                                          "role": "viewer"}, headers={"origin": admin.origin})
        assert again.status_code == 400 and "already an operator" in again.text
        bad = await admin.http.post("/operators", data={"csrf": await admin.csrf(), "email": "nope",
                                                        "role": "viewer"}, headers={"origin": admin.origin})
        assert bad.status_code == 400 and "not an email address" in bad.text
        disabled = await admin.http.post("/operators/disable", data={"csrf": await admin.csrf(), "email": email},
                                         headers={"origin": admin.origin})
        assert disabled.status_code == 200 and "signed out everywhere" in disabled.text
        assert (await colleague.http.get("/")).status_code == 303  # the live session is revoked
        assert (await colleague.log_in(email, password)).status_code == 401
        activity = (await admin.http.get("/activity")).text
        assert "operator.create" in activity and "operator.disable" in activity and password not in activity


async def test_admin_cannot_disable_themselves(con: InProcessConsole) -> None:
    email = await con.operator("admin")
    await con.log_in(email)
    response = await con.http.post("/operators/disable", data={"csrf": await con.csrf(), "email": email},
                                   headers={"origin": con.origin})
    assert response.status_code == 400 and "your own account" in response.text
    assert (await con.http.get("/")).status_code == 200


async def test_activity_pages_and_filter(con: InProcessConsole) -> None:
    from paygate_server.console.actions import record_action
    from paygate_server.console.pages.activity import PAGE_SIZE
    from paygate_server.ids import new_id

    email = await con.operator("viewer")
    await con.log_in(email)
    operator = await con.console.accounts.find(email)
    assert operator is not None
    target = new_id("pi")
    for n in range(PAGE_SIZE + 3):
        await record_action(con.console.gateway.db, operator_id=operator.id, action="refund", target=target,
                            detail={"amount": n, "currency": "EUR"}, remote_addr="198.51.100.1")
    first = await con.http.get("/activity", params={"target": target})
    assert first.text.count("<tr>") == PAGE_SIZE + 1  # the header row and a full page
    assert f"amount={PAGE_SIZE + 2}" in first.text and "Older" in first.text
    older_href = first.text.split('href="/activity?before=', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    second = await con.http.get("/activity?before=" + older_href)
    assert second.text.count("<tr>") == 4 and "amount=0," in second.text and "Older" not in second.text
    none = await con.http.get("/activity", params={"target": "pi_none"})
    assert "No action on pi_none yet" in none.text
    for bad in ({"before": "abc"}, {"before": "-1"}, {"target": "x" * 65}, {"target": "pi_\x00"}):
        assert (await con.http.get("/activity", params=bad)).status_code == 400
    huge = await con.http.get("/activity", params={"before": str(2**40)})
    assert huge.status_code == 200


async def test_activity_before_takes_ascii_digits_only(con: InProcessConsole) -> None:
    """Once: ``?before=²`` passed str.isdigit() and int() refused it, a 500; other scripts'
    digits (``٣``, ``１``) were read as numbers. Refused like a link someone edited."""
    await con.log_in(await con.operator("viewer"))
    for before in ("\u00b2", "\u0663", "\uff11", "1\u00b2"):
        r = await con.http.get("/activity", params={"before": before})
        assert r.status_code == 400 and "does not exist" in r.text, (before, r.status_code)


def test_role_table() -> None:
    assert ROLES == ("admin", "support", "viewer")
    assert all(can("admin", p) for p in PERMISSIONS["admin"]) and can("admin", "manage_operators")
    # SPEC §12, exactly: support (read, refund, cancel, capture, replay) — not reconcile.
    assert sorted(PERMISSIONS["support"]) == sorted(["read", "refund", "cancel", "capture", "replay"])
    assert not can("support", "manage_operators") and not can("support", "manage_merchants")
    assert can("viewer", "read") and not any(can("viewer", p) for p in PERMISSIONS["admin"] - {"read"})
    assert not can("root", "read")


async def test_a_role_the_table_does_not_know_opens_nothing_the_overviews_data_included(
        con: InProcessConsole) -> None:
    """roles.can: an unknown role (a row edited by hand, no CHECK in the schema) may nothing.
    Every page refused it, but /overview.json — the Overview's data, fetched by its script —
    asked only for a session, and served payments per minute and outcomes to it."""
    email = await con.operator("viewer")
    assert (await con.log_in(email)).status_code == 303
    async with con.console.gateway.db.write() as conn:
        await conn.execute(update(operators).where(operators.c.email == email).values(role="auditor"))
    for path in ("/", "/payments", "/activity"):
        assert (await con.http.get(path)).status_code == 403, path
    data = await con.http.get("/overview.json")
    assert data.status_code == 403 and "payments" not in data.text and "totals" not in data.text, data.text


async def test_the_console_starts_no_background_work(database_url: str, tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    async with running_console(make_settings(database_url, tmp_path, run_background=True)) as con:
        assert con.console.settings.run_background is False
        assert asyncio.all_tasks() - before == set()


async def test_a_failing_page_is_a_readable_500(database_url: str, tmp_path: Path) -> None:
    from paygate_server.console.app import create_console_app
    from paygate_server.console.pages import PAGE_MODULES

    app = create_console_app(make_settings(database_url, tmp_path),
                             page_modules=(*PAGE_MODULES, "tests.server.console.failing_page"))
    async with app.router.lifespan_context(app) as state:
        state["console"].accounts = Accounts(state["console"].gateway.db, CHEAP)

        async def with_state(scope, receive, send):  # type: ignore[no-untyped-def]
            scope["state"] = dict(state)
            await app(scope, receive, send)

        transport = httpx.ASGITransport(app=with_state, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8083") as http:
            email = new_email()
            await state["console"].accounts.create(email, "viewer", PASSWORD)
            token = login_token((await http.get("/login")).text)
            await http.post("/login", data={"email": email, "password": PASSWORD, "csrf": token},
                            headers={"origin": "http://127.0.0.1:8083"})
            response = await http.get("/broken")
    assert response.status_code == 500 and "reload the page" in response.text
    assert "4242424242424242" not in response.text and "sk_test" not in response.text
    assert "Traceback" not in response.text
    assert response.headers["content-security-policy"]


async def test_the_gateway_serves_no_console_page(gw: InProcessGateway) -> None:
    """SPEC §12: the console is its own process and port, not the public API's — ``paygate
    serve``'s app answers none of the console's routes."""
    for path in ("/login", "/operators", "/payments", "/merchants", "/reconciliation", "/activity", "/overview.json"):
        assert (await gw.http.get(path)).status_code == 404, path
    refused = await gw.http.post("/login", data={"email": "a@example.com", "password": PASSWORD})
    assert refused.status_code in (404, 405)
