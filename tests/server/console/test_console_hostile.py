"""Hostile input against every page and form of a real ``paygate console`` process
(SQLite and PostgreSQL), signed in as an admin.

The routes are walked from the app (``create_console_app().routes``): a page or form added
without a plan here fails :func:`test_every_console_route_has_a_plan`. Every answer to
fields of every shape (unicode, NUL, card numbers, huge, repeated, strangers), query
garbage, path ids of every shape, wrong content types, and broken or missing CSRF tokens
and Origins must be below 500, an HTML page without a traceback or a card number; a form
refused for its CSRF token or Origin writes nothing (the rows of every table the console
writes are counted before and after).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from paygate_server.config import Settings
from paygate_server.console.accounts import Accounts
from paygate_server.console.app import create_console_app
from paygate_server.console.security import CSRF_FIELD
from paygate_server.procs import ServiceProcess, console_command
from paygate_server.storage import create_database
from paygate_server.storage.schema import (
    api_keys,
    merchant_origins,
    merchants,
    payment_intents,
    refunds,
)
from paygate_server.storage.schema_console import operator_actions, operators
from paygate_server.storage.schema_history import webhook_endpoints
from tests.server.console.conftest import CHEAP, PASSWORD, InProcessConsole, new_email
from tests.support.app import TEST_MASTER_KEY
from tests.support.console_login import login_token
from tests.support.hostile import (
    assert_no_leak,
    path_ids,
    query_strings,
    served_routes,
    text_values,
)
from tests.support.processes import gateway_env, make_merchant
from tests.support.slow_set import is_slow_run

pytestmark = pytest.mark.slow

# (method, path) -> the form's fields (POST) or the page's query parameters (GET).
PLANS: dict[tuple[str, str], tuple[str, ...]] = {
    ("GET", "/healthz"): (),
    ("GET", "/readyz"): (),
    ("GET", "/login"): ("next",),
    ("POST", "/login"): ("email", "password"),
    ("POST", "/logout"): (),
    ("GET", "/"): (),
    ("GET", "/overview.json"): (),
    ("GET", "/payments"): ("id", "merchant", "status", "currency", "amount_min", "amount_max", "after"),
    ("GET", "/payments/{intent_id}"): (),
    ("POST", "/payments/{intent_id}/refund"): ("amount", "reason"),
    ("POST", "/payments/{intent_id}/capture"): ("amount",),
    ("POST", "/payments/{intent_id}/cancel"): (),
    ("POST", "/payments/{intent_id}/reconcile"): ("object_id",),
    ("POST", "/payments/{intent_id}/replay"): ("endpoint_id", "event_id"),
    ("GET", "/reconciliation"): ("after", "date", "account"),
    ("POST", "/reconciliation/check"): ("kind", "object_id"),
    ("POST", "/reconciliation/late"): ("id",),
    ("GET", "/merchants"): ("after",),
    ("POST", "/merchants"): ("name", "origins"),
    ("GET", "/merchants/{merchant_id}"): (),
    ("POST", "/merchants/{merchant_id}/origins"): ("origins",),
    ("POST", "/merchants/{merchant_id}/keys"): ("live",),
    ("POST", "/merchants/{merchant_id}/keys/revoke"): ("api_key",),
    ("POST", "/merchants/{merchant_id}/webhooks"): ("url",),
    ("POST", "/merchants/{merchant_id}/deliveries/replay"): ("endpoint_id", "event_id"),
    ("GET", "/activity"): ("before", "target"),
    ("GET", "/operators"): (),
    ("POST", "/operators"): ("email", "role"),
    ("POST", "/operators/disable"): ("email",),
}
WRITTEN = (merchants, merchant_origins, api_keys, operators, operator_actions, payment_intents, refunds,
           webhook_endpoints)


def console_routes() -> list[tuple[str, str]]:
    return served_routes(create_console_app(Settings(data_dir=Path("/nonexistent"),
                                                     database_url="sqlite:///:memory:", master_key=TEST_MASTER_KEY)))


ROUTES = console_routes()


def test_every_console_route_has_a_plan() -> None:
    assert sorted(PLANS) == ROUTES, "a console route without a fuzzing plan (or a plan for a route that is gone)"


@dataclass
class Console:
    proc: ServiceProcess
    database_url: str
    email: str
    merchant_id: str
    http: httpx.Client

    def log_in(self) -> None:
        self.http.cookies.clear()
        token = login_token(self.http.get("/login").text)
        r = self.http.post("/login", data={"email": self.email, "password": PASSWORD, "csrf": token},
                           headers={"origin": self.proc.base_url})
        assert r.status_code == 303, r.text

    def csrf(self) -> str:
        page = self.http.get("/activity")
        marker = f'name="{CSRF_FIELD}" value="'
        start = page.text.index(marker) + len(marker)
        return page.text[start:page.text.index('"', start)]

    def rows(self) -> dict[str, int]:
        """How many rows each table the console writes holds."""
        async def run() -> dict[str, int]:
            db = create_database(self.database_url)
            try:
                async with db.read() as conn:
                    return {t.name: int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
                            for t in WRITTEN}
            finally:
                await db.dispose()
        return asyncio.run(run())


@pytest.fixture(scope="module")
def console(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    data_dir = tmp_path_factory.mktemp("console")
    email = new_email("admin")

    async def create_admin() -> None:
        db = create_database(database_url)
        try:
            await Accounts(db, CHEAP).create(email, "admin", PASSWORD)
        finally:
            await db.dispose()
    asyncio.run(create_admin())
    merchant = make_merchant(database_url, "Console Hostile")
    # The default processor is a closed port: a settlement report asked for fails at once.
    with ServiceProcess(console_command, log_path=data_dir / "console.log",
                        env=gateway_env(database_url, data_dir, PAYGATE_PROCESSOR_URL="http://127.0.0.1:9")) as proc:
        with httpx.Client(base_url=proc.base_url, timeout=httpx.Timeout(15.0)) as http:
            c = Console(proc, database_url, email, merchant.merchant_id, http)
            c.log_in()
            yield c


@st.composite
def form_requests(draw: st.DrawFn, console: Console, method: str, path: str,
                  csrf: str) -> tuple[str, bytes, dict[str, str], bool]:
    """A hostile request: target, body, headers, and whether its CSRF token and Origin are right."""
    fields = PLANS[(method, path)]
    target = path.replace("{merchant_id}", draw(path_ids([console.merchant_id])))
    target = target.replace("{intent_id}", draw(path_ids(["pi_" + "0" * 26])))
    headers = {}
    if method == "GET":
        query = draw(query_strings(fields))
        return (f"{target}?{query}" if query else target), b"", headers, True
    names = st.sampled_from(list(fields)) | st.text(max_size=10) if fields else st.text(max_size=10)
    pairs = draw(st.lists(st.tuples(names, text_values), max_size=6))
    token = draw(st.sampled_from(["right", "right", "right", "missing", "garbage", "empty"]))
    if token != "missing":
        pairs.insert(draw(st.integers(0, len(pairs))),
                     (CSRF_FIELD, {"right": csrf, "garbage": draw(text_values), "empty": ""}[token]))
    origin = draw(st.sampled_from(["right", "right", "right", "missing", "foreign", "null"]))
    if origin != "missing":
        headers["origin"] = {"right": console.proc.base_url, "foreign": "http://evil.example", "null": "null"}[origin]
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode()
    body = draw(st.sampled_from([body] * 4 + [b"\xff\xfe=\xff", b"%zz=%", b"a" * (70 * 1024)]))
    headers["content-type"] = draw(st.sampled_from(["application/x-www-form-urlencoded"] * 4 + [
        "", "application/json", "multipart/form-data; boundary=x", "text/plain"]))
    return target, body, headers, token == "right" and origin == "right"


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_hostile_console_input(console: Console, request: pytest.FixtureRequest, method: str, path: str) -> None:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    csrf = console.csrf()

    @settings(max_examples=100 if slow else 3, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        target, body, headers, right = data.draw(form_requests(console, method, path, csrf))
        before = console.rows() if method == "POST" and not right else None
        r = console.http.request(method, target, content=body, headers=headers)
        assert r.status_code < 500, (target, body[:300], r.text[:2000])
        assert_no_leak(r.text)
        if r.status_code >= 400 or r.status_code == 200:
            assert r.headers.get("content-type", "").startswith(("text/html", "application/json", "text/plain")), \
                r.headers
        if before is not None and path != "/login":
            assert r.status_code in (303, 400, 403, 404, 413, 415), (target, r.status_code, r.text[:500])
            assert console.rows() == before, (target, body[:300])
        if path in ("/logout", "/login") or (path == "/operators/disable" and r.status_code == 303):
            console.log_in()  # the session may be gone: the next example is signed in again

    fuzz()
    assert "Traceback" not in console.proc.output()


# --- what the fuzzing found, pinned -------------------------------------------------------

CARD = "4242 4242 4242 4242"


async def test_a_csrf_token_of_any_text_is_refused_with_403_not_a_500(con: InProcessConsole) -> None:
    """Once: a posted token holding non-ASCII reached hmac.compare_digest as str, which
    raises TypeError for it: a 500 where the refusal belongs."""
    await con.log_in(await con.operator("admin"))
    for token in ("\u0080", "é" * 64, "🙂"):
        r = await con.http.post("/merchants", data={"csrf": token, "name": "Shop", "origins": "https://a.example"},
                                headers={"origin": con.origin})
        assert r.status_code == 403, (token, r.status_code)


async def test_a_card_number_in_any_filter_or_form_is_refused_and_never_shown(con: InProcessConsole) -> None:
    """Once: /activity?target=<card number> and /reconciliation?date=<card number> showed
    it back in the page (SPEC §12: never a card number), and a form stored one as a
    merchant's name. Every page's query and every form is looked at, once, in web.py."""
    await con.log_in(await con.operator("admin"))
    for target in (f"/activity?target={CARD}", f"/reconciliation?date={CARD}", f"/merchants?after={CARD}"):
        r = await con.http.get(target)
        assert r.status_code == 400 and "looks like a card number" in r.text, (target, r.status_code)
        assert CARD not in r.text and CARD.replace(" ", "") not in r.text, target
    r = await con.http.post("/merchants", data={"csrf": await con.csrf(), "name": f"Shop {CARD}",
                                                "origins": "https://a.example"}, headers={"origin": con.origin})
    assert r.status_code == 400 and "looks like a card number" in r.text and CARD not in r.text, r.status_code
    page = await con.http.get("/merchants")
    assert CARD not in page.text and "Shop 4242" not in page.text
