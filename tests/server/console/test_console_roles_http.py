"""Every page and every form of the console, as each role (SPEC §12: ``admin`` everything,
``support`` read, refund, cancel, capture, replay, ``viewer`` read only), through the app
over HTTP (SQLite and PostgreSQL).

The table below is SPEC §12's, written out here rather than read from ``console/roles.py``,
so a permission widened in the code fails it. The routes are walked from the app: a form
added without a row here fails :func:`test_every_console_form_has_a_row`. A refused role
gets 403 with a valid session, CSRF token and ``Origin`` — the request a hand-written form
would send — and nothing in the database changes (every table an action could write,
compared row by row); the same form from a role that may send it is not refused for its role,
and is recorded and shown on the Activity page. Every form also needs its session's CSRF
token and the console's ``Origin``, and every form a page renders carries the token.

The database is made once per module and backend (the template: migrated, 60 payments
seeded, the rows the forms name, an operator of each role signed in) and only ever copied.
A test that sends forms a role may send (and so changes rows) has a copy and a console of its
own: what one test's allowed form does, no other test sees, and its refused roles go first,
on rows nothing has acted on. The tests that only read, or only send forms that must be
refused, share one copy and one console (``shared``); none of them sends a form that may
succeed. The sessions are the template's, copied with it (a session is a row; its cookie and
CSRF token depend only on its id and the master key), so a test signs in as a role without
a new login; logging in itself is the login tests' subject.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from paygate_server.clock import now_us, to_rfc3339
from paygate_server.config import Settings
from paygate_server.console.accounts import LOGIN_REFUSED
from paygate_server.console.actions import recent_actions
from paygate_server.merchants import create_merchant
from paygate_server.storage.port import LateOutcome
from paygate_server.storage.schema import (
    api_keys,
    idempotency_keys,
    merchant_origins,
    merchants,
    payment_intents,
    reconcile_queue,
    refunds,
    transactions,
)
from paygate_server.storage.schema_console import operator_actions, operators
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from paygate_server.storage.schema_processors import (
    late_outcomes,
    processor_accounts,
    routing_rules,
)
from paygate_server.webhooks.model import create_endpoint
from tests.server.console.conftest import InProcessConsole, new_email, running_console
from tests.server.console.test_console_hostile import console_routes
from tests.support.app import test_settings as make_settings
from tests.support.console_seed import Seeded, seed_payments
from tests.support.databases import (
    backend_of,
    copy_of_database,
    drop_database,
    migrated_database_url,
)

ADMIN, SUPPORT, VIEWER = "admin", "support", "viewer"
ADMIN_AGAIN = "admin, second session"  # another session of the admin: another CSRF token
EVERY_ROLE = frozenset({ADMIN, SUPPORT, VIEWER})
STAFF = frozenset({ADMIN, SUPPORT})  # SPEC §12: support may refund, cancel, capture, replay
ONLY_ADMIN = frozenset({ADMIN})

# (method, path) -> the roles SPEC §12 lets send it. /login has no session (and no role).
FORMS: dict[str, frozenset[str]] = {
    "/logout": EVERY_ROLE,
    "/payments/{intent_id}/refund": STAFF,
    "/payments/{intent_id}/capture": STAFF,
    "/payments/{intent_id}/cancel": STAFF,
    "/payments/{intent_id}/replay": STAFF,
    "/merchants/{merchant_id}/deliveries/replay": STAFF,
    "/payments/{intent_id}/reconcile": ONLY_ADMIN,  # not in support's list: admin's "everything"
    "/reconciliation/check": ONLY_ADMIN,
    "/reconciliation/late": ONLY_ADMIN,
    "/merchants": ONLY_ADMIN,
    "/merchants/{merchant_id}/origins": ONLY_ADMIN,
    "/merchants/{merchant_id}/keys": ONLY_ADMIN,
    "/merchants/{merchant_id}/keys/revoke": ONLY_ADMIN,
    "/merchants/{merchant_id}/webhooks": ONLY_ADMIN,
    "/operators": ONLY_ADMIN,
    "/operators/disable": ONLY_ADMIN,
}
PAGES: dict[str, frozenset[str]] = {  # GET: who may open it (the others get 403)
    "/": EVERY_ROLE, "/overview.json": EVERY_ROLE, "/payments": EVERY_ROLE, "/payments/{intent_id}": EVERY_ROLE,
    "/reconciliation": EVERY_ROLE, "/merchants": EVERY_ROLE, "/merchants/{merchant_id}": EVERY_ROLE,
    "/activity": EVERY_ROLE, "/operators": ONLY_ADMIN,
}
UNGUARDED = {"/healthz", "/readyz", "/login"}  # no session needed: probes and the login form

SNAPSHOT = (merchants, merchant_origins, api_keys, idempotency_keys, payment_intents, transactions, refunds,
            reconcile_queue, operators, operator_actions, webhook_endpoints, webhook_events, webhook_deliveries,
            processor_accounts, routing_rules, late_outcomes)


def test_every_console_form_has_a_row() -> None:
    routes = console_routes()
    assert sorted(path for method, path in routes if method == "POST" and path != "/login") == sorted(FORMS)
    assert sorted(path for method, path in routes if method == "GET" and path not in UNGUARDED) == sorted(PAGES)


@dataclass
class Targets:
    """Real rows every form can name: what an allowed role's form would act on."""
    paid: str  # a succeeded payment (refund)
    held: str  # an authorization (capture, cancel)
    unknown: str  # a payment whose charge has no outcome (ask the processor)
    unknown_attempt: str
    merchant: str
    api_key: str
    endpoint: str
    late: int


async def _targets(con: InProcessConsole, seeded: Seeded) -> Targets:
    def first(status: str) -> dict[str, Any]:
        return next(i for i in seeded.intents if i["status"] == status and i["merchant_id"] == seeded.merchants[0])
    unknown = next(a for a in seeded.attempts if a["status"] == "unknown")
    gateway = con.console.gateway
    async with gateway.db.write() as conn:
        pair = await create_merchant(conn, gateway.master_key, name="Roles Shop", origins=["https://roles.example"])
        endpoint, _ = await create_endpoint(conn, gateway.master_key, pair.merchant_id, "https://hooks.example/x", None)
    late = LateOutcome(kind="refund", object_id="re_roles1", intent_id=first("succeeded")["id"],
                       merchant_id=seeded.merchants[0], connector="simulator", gateway_status="succeeded",
                       processor_status="failed", processor_text="refused", received_at=now_us())
    assert await gateway.payments.record_late_outcome(late)
    [stored] = await gateway.payments.late_outcomes(limit=10)
    return Targets(paid=first("succeeded")["id"], held=first("requires_capture")["id"], unknown=unknown["intent_id"],
                   unknown_attempt=unknown["id"], merchant=pair.merchant_id, api_key=pair.api_key,
                   endpoint=endpoint.id, late=stored.id)


def _request(path: str, t: Targets) -> tuple[str, dict[str, str]]:
    """The URL and the fields an operator allowed to would send."""
    key = {"idempotency_key": "roles-" + path.rsplit("/", 1)[-1] + "-" + new_email("k")[:14].replace("@", "")}
    forms: dict[str, tuple[str, dict[str, str]]] = {
        "/logout": ("/logout", {}),
        "/payments/{intent_id}/refund": (f"/payments/{t.paid}/refund", {**key, "amount": "1.00", "reason": "asked"}),
        "/payments/{intent_id}/capture": (f"/payments/{t.held}/capture", {**key, "amount": ""}),
        "/payments/{intent_id}/cancel": (f"/payments/{t.held}/cancel", key),
        "/payments/{intent_id}/replay": (f"/payments/{t.paid}/replay", {"event_id": "evt_x", "endpoint_id": t.endpoint}),
        "/merchants/{merchant_id}/deliveries/replay": (f"/merchants/{t.merchant}/deliveries/replay",
                                                       {"event_id": "evt_x", "endpoint_id": t.endpoint}),
        "/payments/{intent_id}/reconcile": (f"/payments/{t.unknown}/reconcile", {"object_id": t.unknown_attempt}),
        "/reconciliation/check": ("/reconciliation/check", {"kind": "charge", "object_id": t.unknown_attempt}),
        "/reconciliation/late": ("/reconciliation/late", {"id": str(t.late)}),
        "/merchants": ("/merchants", {"name": "Made By Hand", "origins": "https://hand.example"}),
        "/merchants/{merchant_id}/origins": (f"/merchants/{t.merchant}/origins", {"origins": "https://more.example"}),
        "/merchants/{merchant_id}/keys": (f"/merchants/{t.merchant}/keys", {}),
        "/merchants/{merchant_id}/keys/revoke": (f"/merchants/{t.merchant}/keys/revoke", {"api_key": t.api_key}),
        "/merchants/{merchant_id}/webhooks": (f"/merchants/{t.merchant}/webhooks", {"url": "http://127.0.0.1:9/y"}),
        "/operators": ("/operators", {"email": new_email("made"), "role": ADMIN}),
        "/operators/disable": ("/operators/disable", {"email": ""}),  # filled in with a real account
    }
    return forms[path]


async def _snapshot(con: InProcessConsole) -> dict[str, list[str]]:
    async with con.console.gateway.db.read() as conn:
        return {table.name: sorted(repr(tuple(row)) for row in (await conn.execute(select(table))).all())
                for table in SNAPSHOT}


@dataclass
class Session:
    email: str
    cookies: list[Cookie]


@dataclass
class Template:
    """The module's seeded database (only ever copied once made) and what it holds."""
    url: str
    targets: Targets
    sessions: dict[str, Session]  # a role (or ADMIN_AGAIN) → its operator's live session


@dataclass
class Prepared:
    """What a test gets: a console on a copy of the template (its own, or ``shared``), the
    rows the forms name and the template's sessions."""
    con: InProcessConsole
    targets: Targets
    sessions: dict[str, Session]

    def sign_in(self, who: str) -> str:
        """The browser of ``who`` (a role or ADMIN_AGAIN), signed in: its operator's email."""
        self.con.http.cookies.clear()
        for cookie in self.sessions[who].cookies:
            self.con.http.cookies.jar.set_cookie(cookie)
        return self.sessions[who].email


def _settings(url: str, data_dir: Path) -> Settings:
    # The default processor is a closed port: an allowed "ask now" is answered, not hung.
    # Private webhook addresses allowed: this sandbox resolves no public name. The template's
    # sessions must outlive the module however loaded the machine: idle as long as they live.
    settings = make_settings(url, data_dir, processor_url="http://127.0.0.1:9", webhook_allow_private=True)
    return replace(settings, console_idle_timeout_s=settings.console_session_ttl_s)


async def _fill_template(url: str, data_dir: Path) -> Template:
    async with running_console(_settings(url, data_dir)) as con:  # closed on return: copies need no open pool
        targets = await _targets(con, await seed_payments(con.console.gateway.db, 60, merchants=2))
        sessions: dict[str, Session] = {}
        for who, role in ((ADMIN, ADMIN), (SUPPORT, SUPPORT), (VIEWER, VIEWER), (ADMIN_AGAIN, None)):
            con.http.cookies.clear()
            email = sessions[ADMIN].email if role is None else await con.operator(role)
            assert (await con.log_in(email)).status_code == 303
            sessions[who] = Session(email, list(con.http.cookies.jar))
    return Template(url, targets, sessions)


@pytest.fixture(scope="module")
def template(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    directory = tmp_path_factory.mktemp("roles")
    url = migrated_database_url(backend_of(database_url), directory)
    try:
        yield asyncio.run(_fill_template(url, directory))
    finally:
        drop_database(url)


@contextlib.contextmanager
def _copy(template: Template, directory: Path) -> Iterator[str]:
    url = copy_of_database(template.url, directory)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def seeded_url(template: Template, tmp_path: Path) -> Iterator[str]:
    with _copy(template, tmp_path) as url:
        yield url


@pytest.fixture
async def seeded(template: Template, seeded_url: str, tmp_path: Path) -> AsyncIterator[Prepared]:
    """A console of the test's own, on a copy of its own."""
    async with running_console(_settings(seeded_url, tmp_path)) as con:
        yield Prepared(con, template.targets, template.sessions)


@pytest.fixture(scope="module")
def shared_url(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _copy(template, tmp_path_factory.mktemp("roles-shared")) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_console(template: Template, shared_url: str,
                         tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Prepared]:
    async with running_console(_settings(shared_url, tmp_path_factory.mktemp("roles-shared-data"))) as con:
        yield Prepared(con, template.targets, template.sessions)


@pytest.fixture
def shared(shared_console: Prepared) -> Prepared:
    """The console of the module's tests that send no form a role may send (``SHARED``),
    each test's browser starting with no cookie (nobody signed in)."""
    shared_console.con.http.cookies.clear()
    return shared_console


SHARED = pytest.mark.asyncio(loop_scope="module")  # the loop of ``shared``


async def _assert_recorded_and_shown(con: InProcessConsole, email: str, since: int) -> None:
    """SPEC §12: the action is recorded with who, what and when, and shown on Activity."""
    rows = [row for row in await recent_actions(con.console.gateway.db, limit=10)
            if row.operator_email == email and row.at >= since]
    assert rows and rows[0].action != "login", [row.action for row in rows]
    done = rows[0]
    if done.action == "logout":
        assert (await con.log_in(email)).status_code == 303
    page = (await con.http.get("/activity", params={"target": done.target} if done.target else None)).text
    row = next((line for line in page.splitlines() if f"<td>{done.action}</td>" in line and email in line), None)
    assert row is not None and to_rfc3339(done.at) in row, (done, page[-2000:])


@pytest.mark.parametrize("path", sorted(FORMS))
async def test_a_form_a_role_may_not_send_is_refused_and_changes_nothing(seeded: Prepared, path: str) -> None:
    con, targets = seeded.con, seeded.targets
    for role in sorted(EVERY_ROLE - FORMS[path]) + sorted(FORMS[path]):  # the refused first: nothing done yet
        email = seeded.sign_in(role)
        url, fields = _request(path, targets)
        if path == "/operators/disable":
            fields = {"email": await con.operator(VIEWER)}
        fields = {"csrf": await con.csrf(), **fields}
        before = await _snapshot(con)
        started = now_us()
        response = await con.http.post(url, data=fields, headers={"origin": con.origin})
        if role in FORMS[path]:
            assert response.status_code < 500 and "role cannot" not in response.text, (role, path, response.text[:800])
            assert response.status_code != 403, (role, path, response.text[:800])
            await _assert_recorded_and_shown(con, email, started)
            continue
        assert response.status_code == 403 and "role cannot do this" in response.text, (role, path, response.status_code)
        assert await _snapshot(con) == before, (role, path)
        assert (await con.http.get("/")).status_code == 200  # still signed in: a refusal is not a logout


@SHARED
@pytest.mark.parametrize("path", sorted(PAGES))
async def test_every_page_opens_for_the_roles_that_may_read_it(shared: Prepared, path: str) -> None:
    con, t = shared.con, shared.targets
    url = path.replace("{intent_id}", t.paid).replace("{merchant_id}", t.merchant)
    for role in sorted(EVERY_ROLE):
        shared.sign_in(role)
        response = await con.http.get(url)
        assert response.status_code == (200 if role in PAGES[path] else 403), (role, url, response.text[:500])


@SHARED
async def test_a_support_operators_payment_page_offers_only_its_actions(shared: Prepared) -> None:
    """Hidden as well as refused: support sees refund, capture and cancel, never "ask the
    processor" (admin's); a viewer sees no form but logout."""
    con, t = shared.con, shared.targets
    offered: dict[str, set[str]] = {}
    for role in (ADMIN, SUPPORT, VIEWER):
        shared.sign_in(role)
        pages = "".join([(await con.http.get(f"/payments/{pid}")).text for pid in (t.paid, t.held, t.unknown)]
                        + [(await con.http.get("/reconciliation")).text,
                           (await con.http.get(f"/merchants/{t.merchant}")).text,
                           (await con.http.get("/merchants")).text])
        offered[role] = set(re.findall(r'<form method="post" action="/[^"]*?/?([a-z]+)"', pages))
    assert {"refund", "capture", "cancel", "reconcile", "check", "late", "merchants", "origins", "keys", "revoke",
            "webhooks"} <= offered[ADMIN]
    assert {"refund", "capture", "cancel"} <= offered[SUPPORT]
    assert not offered[SUPPORT] & {"reconcile", "check", "late", "merchants", "origins", "keys", "revoke", "webhooks"}
    assert offered[VIEWER] <= {"logout"}


@SHARED
async def test_a_disabled_operators_session_and_password_stop_at_once(shared: Prepared) -> None:
    con = shared.con  # its own operator: nobody else's session is disabled
    email = await con.operator(SUPPORT)
    await con.log_in(email)
    assert (await con.http.get("/payments")).status_code == 200
    await con.console.accounts.disable(email)
    assert (await con.http.get("/payments")).status_code == 303  # to /login: the session is revoked
    refused = await con.log_in(email)
    assert refused.status_code == 401 and LOGIN_REFUSED in refused.text.replace("&#39;", "'")


@SHARED
@pytest.mark.parametrize("path", sorted(FORMS))
async def test_every_form_needs_its_csrf_token_and_the_consoles_origin(shared: Prepared, path: str) -> None:
    """SPEC §12: every state-changing form carries a CSRF token and checks ``Origin`` — each
    form, as an admin (who may send them all): without the token, with another session's,
    without ``Origin`` or from another origin, it is refused with 403 and nothing changes."""
    con, targets = shared.con, shared.targets
    shared.sign_in(ADMIN_AGAIN)
    other_token = await con.csrf()
    shared.sign_in(ADMIN)
    url, fields = _request(path, targets)
    if path == "/operators/disable":
        fields = {"email": await con.operator(VIEWER)}
    token = await con.csrf()
    assert token != other_token
    for data, origin in (({**fields}, con.origin), ({"csrf": other_token, **fields}, con.origin),
                         ({"csrf": token, **fields}, None), ({"csrf": token, **fields}, "http://evil.example"),
                         ({"csrf": token, **fields}, "null")):
        before = await _snapshot(con)
        response = await con.http.post(url, data=data, headers={"origin": origin} if origin else {})
        assert response.status_code == 403, (path, origin, "csrf" in data, response.status_code)
        assert await _snapshot(con) == before, (path, origin)


@SHARED
async def test_every_post_form_a_page_renders_carries_the_csrf_token(shared: Prepared) -> None:
    con, t = shared.con, shared.targets
    shared.sign_in(ADMIN)
    token = await con.csrf()
    pages = ["/", "/payments", f"/payments/{t.paid}", f"/payments/{t.held}", f"/payments/{t.unknown}",
             "/reconciliation", "/merchants", f"/merchants/{t.merchant}", "/activity", "/operators"]
    seen = set()
    for url in pages:
        page = (await con.http.get(url)).text
        for form in re.findall(r'<form method="post".*?</form>', page, re.S):
            action = re.search(r'action="([^"]+)"', form)
            assert action is not None and f'name="csrf" value="{token}"' in form, (url, form[:300])
            seen.add(action.group(1))
    # The forms looked at cover every kind the console has (logout, actions, merchants, operators).
    assert {"/logout", f"/payments/{t.paid}/refund", f"/payments/{t.held}/capture", f"/payments/{t.held}/cancel",
            "/reconciliation/late", "/merchants", f"/merchants/{t.merchant}/keys", "/operators"} <= seen, seen
