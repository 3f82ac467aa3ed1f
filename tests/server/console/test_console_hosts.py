"""The console's ``Host`` check, HSTS and the session cookie's name, against real
``paygate console`` processes over real HTTP (SQLite; nothing here depends on the database):

* one as the demo runs it (no configured origin): IP literals and ``localhost`` are served,
  any other name — a DNS-rebinding page's — is refused with 421 before any page runs, a
  missing, repeated or unreadable ``Host`` with 400; probes answer under any name;
* one behind a TLS-terminating proxy (``PAYGATE_CONSOLE_ORIGIN=https://console.paygate.test``,
  the proxy's requests sent here as it would: plain http, the browser's ``Host`` and
  ``Origin``): its name is served, with HSTS and a ``__Host-`` cookie.
"""
from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from paygate_server.console.accounts import Accounts
from paygate_server.console.security import HSTS, LOGIN_COOKIE_NAME, SECURE_SESSION_COOKIE
from paygate_server.console.sessions import COOKIE_NAME
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from tests.server.console.conftest import CHEAP, PASSWORD, new_email
from tests.support.console_login import login_token
from tests.support.databases import migrated_database_url
from tests.support.processes import gateway_env

PUBLIC_ORIGIN = "https://console.paygate.test"


@dataclass
class RunningConsole:
    proc: ServiceProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.proc.base_url

    def operator(self, role: str = "viewer") -> str:
        email = new_email(role)

        async def run() -> None:
            db = create_database(self.database_url)
            try:
                await Accounts(db, CHEAP).create(email, role, PASSWORD)
            finally:
                await db.dispose()
        asyncio.run(run())
        return email

    def raw(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` as written (httpx always writes one Host); the status and the rest."""
        with socket.create_connection((self.proc.host, self.proc.port), timeout=10) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        return int(answer.split(b" ", 2)[1]), answer


def _start(tmp_path_factory: pytest.TempPathFactory, **env: str) -> Iterator[RunningConsole]:
    data_dir = tmp_path_factory.mktemp("console")
    url = migrated_database_url("sqlite", data_dir)
    with ServiceProcess(console_command, log_path=data_dir / "console.log",
                        env=gateway_env(url, data_dir, **env)) as proc:
        yield RunningConsole(proc, url)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningConsole]:
    yield from _start(tmp_path_factory)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningConsole]:
    yield from _start(tmp_path_factory, PAYGATE_CONSOLE_ORIGIN=PUBLIC_ORIGIN)


def _log_in(http: httpx.Client, email: str, origin: str, password: str = PASSWORD,
            host: str | None = None) -> httpx.Response:
    """The login page first (its cookie and the form's CSRF token), then the form — the
    cookie passed by hand, as a proxy passes the browser's: a Secure one is not sent to the
    plain-http URL the proxy speaks to. A page refused (421) has no form: posted bare."""
    headers = {"origin": origin} | ({"host": host} if host else {})
    page = http.get("/login", headers={"host": host} if host else None)
    data = {"email": email, "password": password}
    if page.status_code == 200:
        data["csrf"] = login_token(page.text)
        [cookie] = [c.split(";")[0] for c in _set_cookies(page) if LOGIN_COOKIE_NAME + "=" in c.split(";")[0]] or [""]
        headers["cookie"] = cookie
    return http.post("/login", data=data, headers=headers)


def _set_cookies(response: httpx.Response, name: str | None = None) -> list[str]:
    """The response's Set-Cookie fields (only those of cookie ``name``, if given)."""
    fields = response.headers.get_list("set-cookie")
    return fields if name is None else [f for f in fields if f.split("=", 1)[0] == name]


def test_the_demos_loopback_login_still_works(local: RunningConsole) -> None:
    """As ``paygate demo`` prints it: http://127.0.0.1:<port>; and as localhost."""
    email = local.operator()
    for base in (local.url, local.url.replace("127.0.0.1", "localhost")):
        with httpx.Client(base_url=local.url, headers={"host": httpx.URL(base).netloc.decode()}) as http:
            response = _log_in(http, email, base)
            assert (response.status_code, response.headers["location"]) == (303, "/"), base
            [cookie] = _set_cookies(response, COOKIE_NAME)
            assert "secure" not in cookie.lower()
            assert "strict-transport-security" not in response.headers
            home = http.get("/")
            assert home.status_code == 200 and email in home.text


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]:8083", "10.0.0.5:80", "LOCALHOST:1"])
def test_ip_literals_and_localhost_are_served(local: RunningConsole, host: str) -> None:
    with httpx.Client(base_url=local.url) as http:
        assert http.get("/login", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["rebound.example", "rebound.example:8083", "localhost.rebound.example",
                                  "127.0.0.1.nip.io", "console.paygate.test"])
def test_a_name_the_console_does_not_serve_is_refused_with_421(local: RunningConsole, host: str) -> None:
    """A rebinding page's own name: its reads, its login POSTs (with its own Origin, which
    the Origin check alone would take as the console's) — none reaches a page."""
    email = local.operator()
    rebound_origin = f"http://{host}"
    with httpx.Client(base_url=local.url, headers={"host": host}) as http:
        for response in (http.get("/login"), http.get("/"), http.get("/static/console.css"),
                         _log_in(http, email, rebound_origin)):
            assert response.status_code == 421, response.request.url
            assert "Wrong address" in response.text and "PAYGATE_CONSOLE_ORIGIN" in response.text
            assert "Log in" not in response.text and not _set_cookies(response)
            assert response.headers["content-security-policy"] and response.headers["cache-control"] == "no-store"


def test_a_rebinding_page_cannot_lock_an_operator_out(local: RunningConsole) -> None:
    """Twelve wrong passwords posted under a rebound name: none is counted (ten would lock
    the account), so the right password still works."""
    email = local.operator()
    with httpx.Client(base_url=local.url, headers={"host": "rebound.example"}) as http:
        for _ in range(12):
            assert _log_in(http, email, "http://rebound.example", password="not the password").status_code == 421
    with httpx.Client(base_url=local.url) as http:
        assert _log_in(http, email, local.url).status_code == 303


def test_probes_answer_under_any_name(local: RunningConsole) -> None:
    with httpx.Client(base_url=local.url, headers={"host": "console-service"}) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


@pytest.mark.parametrize("head", [
    b"GET /login HTTP/1.1\r\n",                                                  # no Host
    b"GET /login HTTP/1.0\r\n",                                                  # HTTP/1.0, no Host
    b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: rebound.example\r\n",  # two
    b"GET /login HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n",                       # a port out of range
    b"GET /login HTTP/1.1\r\nHost: user@127.0.0.1\r\n",                        # userinfo
    b"GET /login HTTP/1.1\r\nHost: 127.0.0.1:\r\n",                            # an empty port
    b"GET /login HTTP/1.1\r\nHost: \r\n",                                      # empty
    b"GET /login HTTP/1.1\r\nHost: [::1]x\r\n",                                # after the brackets
])
def test_a_missing_repeated_or_unreadable_host_is_400(local: RunningConsole, head: bytes) -> None:
    status, answer = local.raw(head + b"Connection: close\r\n\r\n")
    assert status == 400 and b"its Host header" in answer and b"Traceback" not in answer


def test_behind_the_https_proxy_hsts_and_a_host_prefixed_cookie(proxied: RunningConsole) -> None:
    email = proxied.operator("support")
    with httpx.Client(base_url=proxied.url, headers={"host": "console.paygate.test"}) as http:
        login_page = http.get("/login")
        assert login_page.status_code == 200 and login_page.headers["strict-transport-security"] == HSTS
        response = _log_in(http, email, PUBLIC_ORIGIN)
        assert response.status_code == 303
        [cookie] = _set_cookies(response, SECURE_SESSION_COOKIE)
        name, _, rest = cookie.partition("=")
        attributes = {part.strip().split("=")[0].lower() for part in rest.split(";")[1:]}
        assert name == SECURE_SESSION_COOKIE
        assert {"secure", "httponly", "path", "samesite"} <= attributes and "domain" not in attributes
        assert "path=/" in cookie.lower() and "samesite=strict" in cookie.lower()
        value = rest.split(";")[0]
        page = http.get("/activity", headers={"cookie": f"{SECURE_SESSION_COOKIE}={value}"})
        assert page.status_code == 200 and email in page.text and page.headers["strict-transport-security"] == HSTS
        # The plain name, as a sibling sub-domain could set it, opens nothing here.
        tossed = http.get("/activity", headers={"cookie": f"{COOKIE_NAME}={value}"})
        assert (tossed.status_code, tossed.headers["location"]) == (303, "/login")


def test_behind_the_proxy_another_name_is_refused_and_loopback_still_probes(proxied: RunningConsole) -> None:
    with httpx.Client(base_url=proxied.url) as http:
        assert http.get("/login", headers={"host": "rebound.example"}).status_code == 421
        assert http.get("/login", headers={"host": "paygate.test"}).status_code == 421
        direct = http.get("/login")  # 127.0.0.1: an operator on the box, or a proxy that sends its upstream address
        assert direct.status_code == 200
        # …but a login there is not from the console's origin: refused, as before.
        assert _log_in(http, proxied.operator(), proxied.url).status_code == 403
