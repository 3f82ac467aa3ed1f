"""The console's overview and reconciliation pages over HTTP (httpx → ASGI, the real
lifespan), SQLite and PostgreSQL: the hour's totals and the charts' JSON from seeded
payments, the empty state, the JSON's 401, the reconciliation queue, "ask again" against a
real simulator process (and who may), a day's settlement mismatches, and hostile input."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from paygate_server.clock import now_us, to_rfc3339
from paygate_server.console.actions import recent_actions
from paygate_server.console.pages.reconciliation import age_text
from paygate_server.currencies import format_minor
from paygate_server.intents.endpoints import routes as intent_routes
from paygate_server.processing.endpoints import routes as processing_routes
from paygate_server.simulator.testing import SimulatorProcess
from paygate_server.storage import create_database
from paygate_server.storage.console_overview import POINTS
from tests.server.console.conftest import InProcessConsole, running_console
from tests.server.console.test_console_reads import settled_in_window
from tests.support.app import test_settings as make_settings
from tests.support.console_seed import DAY_US, Seeded, seed_payments


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(tmp_path_factory.mktemp("sim") / "simulator.db") as sim:
        yield sim


@pytest.fixture
async def seeded_console(fresh_database_url: str, tmp_path: Path,
                         simulator: SimulatorProcess) -> AsyncIterator[tuple[InProcessConsole, Seeded]]:
    db = create_database(fresh_database_url)
    try:
        seeded = await seed_payments(db, 300, merchants=3)
    finally:
        await db.dispose()
    settings = make_settings(fresh_database_url, tmp_path, processor_url=simulator.base_url,
                             reconcile_not_found_after_s=1.0)
    async with running_console(settings) as con:
        yield con, seeded


@pytest.fixture
async def empty_console(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessConsole]:
    async with running_console(make_settings(fresh_database_url, tmp_path)) as con:
        yield con


async def signed_in(con: InProcessConsole, role: str) -> None:
    assert (await con.log_in(await con.operator(role))).status_code == 303


async def test_overview_states_the_hours_totals_and_serves_the_charts_data(
        seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    con, seeded = seeded_console
    await signed_in(con, "viewer")
    expected = settled_in_window([seeded], now_us())
    payments = sum(expected.get(name, 0) for name in ("succeeded", "requires_capture", "failed", "unknown"))
    assert payments > 0

    data = (await con.http.get("/overview.json")).json()
    assert len(data["minutes"]) == POINTS and all(len(v) == POINTS for v in data["outcomes"].values())
    for name in ("succeeded", "requires_capture", "captured", "canceled", "failed", "unknown"):
        assert sum(data["outcomes"][name]) == expected.get(name, 0), name
    assert data["totals"]["payments"] == payments
    assert set(data["routes"]) == {"simulator", "pa_seedalpha", "pa_seedbeta"}
    assert all(r is None or 0 <= r <= 100 for r in data["success_rate"])
    assert set(data["latency"]) == {"p50_ms", "p99_ms"} and set(data["backlogs"]) == {"reconcile", "webhooks"}

    page = await con.http.get("/")
    assert page.status_code == 200
    assert f'data-total="payments">{payments}<' in page.text
    assert "No payments in the last hour" in page.text  # in the page for the script to show…
    assert 'id="no-payments" hidden' in page.text  # …but hidden: there are payments
    assert '<script src="/static/overview.js" defer>' in page.text and "<script>" not in page.text
    for path in ("/static/overview.js", "/static/vendor/uPlot.iife.min.js", "/static/vendor/uPlot.min.css"):
        assert (await con.http.get(path)).status_code == 200, path


async def test_an_empty_database_says_what_to_do(empty_console: InProcessConsole) -> None:
    await signed_in(empty_console, "viewer")
    page = await empty_console.http.get("/")
    assert page.status_code == 200 and 'id="no-payments">' in page.text
    assert "No payments in the last hour" in page.text and "paygate demo" in page.text
    # The API calls it names are this gateway's (SPEC §4), not another processor's.
    named = re.findall(r"<code>POST (/[^<\s]+)</code>", page.text)
    assert named and set(named) <= {route.path for route in [*intent_routes, *processing_routes]}, named
    assert "No processor answered in the last hour" in page.text
    data = (await empty_console.http.get("/overview.json")).json()
    assert data["totals"]["payments"] == 0 and data["totals"]["success_rate"] is None and data["routes"] == {}


async def test_the_json_needs_a_session(empty_console: InProcessConsole) -> None:
    response = await empty_console.http.get("/overview.json")
    assert response.status_code == 401 and response.json()["error"] == "signed_out"
    assert response.headers["content-security-policy"]


async def test_queue_lists_unknown_operations_oldest_first(seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    con, seeded = seeded_console
    await signed_in(con, "viewer")
    page = await con.http.get("/reconciliation")
    assert page.status_code == 200
    oldest_first = [q["object_id"] for q in sorted(seeded.queue, key=lambda q: q["created_at"])]
    positions = [page.text.index(object_id) for object_id in oldest_first]
    assert positions == sorted(positions)
    assert "timeout" in page.text  # the processor's last answer
    assert ">Ask again</button>" not in page.text  # a viewer has no control…
    refused = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                  data={"csrf": await con.csrf(), "kind": "charge", "object_id": oldest_first[0]})
    assert refused.status_code == 403  # …and its POST is refused


async def test_a_queue_row_states_its_age_when_it_began_its_amount_and_the_last_answer(
        seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    """SPEC §12: unknown attempts with their age and the processor's last answer. The
    amount reads as every other amount of the console does (once it was in minor units,
    labelled "cents" whatever the currency)."""
    con, seeded = seeded_console
    await signed_in(con, "viewer")
    oldest = min(seeded.queue, key=lambda q: q["created_at"])
    attempt = next(a for a in seeded.attempts if a["id"] == oldest["object_id"])
    before = now_us()
    page = (await con.http.get("/reconciliation")).text
    after = now_us()
    found = re.search(rf"<tr>\s*<td>.*?{oldest['object_id']}.*?</tr>", page, re.S)
    assert found is not None
    row = found.group(0)
    ages = {age_text(at - oldest["created_at"]) for at in (before, after)}
    assert any(f"<td>{age}<br>" in row for age in ages), (ages, row)
    assert to_rfc3339(oldest["created_at"]) in row
    assert f"{format_minor(attempt['amount'], attempt['currency'])} {attempt['currency']}" in row, row
    assert (oldest.get("last_result") or "not asked yet") in row
    assert "minor units" not in page


async def test_ask_again_settles_through_the_reconciler_and_is_recorded(
        seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    con, seeded = seeded_console
    await signed_in(con, "admin")
    page = await con.http.get("/reconciliation")
    assert ">Ask again</button>" in page.text
    # The seeded attempt never reached the simulator: past the not-found window, the
    # reconciler's look-up fails it as never received (its route is the default processor).
    stuck = min((q for q in seeded.queue
                 if next(a for a in seeded.attempts if a["id"] == q["object_id"])["connector"] == "simulator"),
                key=lambda q: q["created_at"])
    asked = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                data={"csrf": await con.csrf(), "kind": "charge", "object_id": stuck["object_id"]})
    assert asked.status_code == 200 and "failed_never_received" in asked.text
    assert stuck["object_id"] not in asked.text.split('id="queue"')[1]  # off the queue
    again = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                data={"csrf": await con.csrf(), "kind": "charge", "object_id": stuck["object_id"]})
    assert again.status_code == 200 and "its outcome is known already" in again.text
    # Both asks are recorded, the one that learnt nothing too (newest first).
    second, first = await recent_actions(con.console.gateway.db, limit=5, target=stuck["object_id"])
    assert first.action == second.action == "reconcile.check_now"
    assert "failed_never_received" in (first.detail or "") and "nothing to ask" in (second.detail or "")

    other = next(q for q in seeded.queue
                 if next(a for a in seeded.attempts if a["id"] == q["object_id"])["connector"] == "pa_seedalpha")
    missing = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                  data={"csrf": await con.csrf(), "kind": "charge", "object_id": other["object_id"]})
    assert missing.status_code == 502 and "keeps trying" in missing.text  # its account does not exist here
    [unreachable] = await recent_actions(con.console.gateway.db, limit=5, target=other["object_id"])
    assert unreachable.action == "reconcile.check_now" and "processor unreachable" in (unreachable.detail or "")


async def test_ask_now_on_a_payments_page_that_cannot_reach_its_processor_is_a_502_not_a_500(
        seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    """Once: the payment page's "ask the processor now" let the reconciler's AccountMissing
    (an attempt routed to an account this database does not have) or ConnectorError escape:
    a 500 where the Reconciliation page's "Ask again" answers 502 and says why."""
    con, seeded = seeded_console
    await signed_in(con, "admin")
    stuck = next(q for q in seeded.queue
                 if next(a for a in seeded.attempts if a["id"] == q["object_id"])["connector"] == "pa_seedalpha")
    intent_id = next(a for a in seeded.attempts if a["id"] == stuck["object_id"])["intent_id"]
    asked = await con.http.post(f"/payments/{intent_id}/reconcile", headers={"origin": con.origin},
                                data={"csrf": await con.csrf(), "object_id": stuck["object_id"]})
    assert asked.status_code == 502, asked.status_code
    assert "no processor account pa_seedalpha" in asked.text and "keeps trying" in asked.text
    done = (await recent_actions(con.console.gateway.db, limit=5, target=intent_id))[0]
    assert done.action == "payment.reconcile" and "refused:processor_unreachable" in (done.detail or "")


@pytest.mark.parametrize("form", [
    {"kind": "teleport", "object_id": "txn_x"}, {"kind": "charge", "object_id": "x" * 500},
    {"kind": "charge", "object_id": "<script>"}, {"kind": "charge"}, {}])
async def test_ask_again_refuses_hostile_forms(seeded_console: tuple[InProcessConsole, Seeded],
                                               form: dict[str, str]) -> None:
    con, _ = seeded_console
    await signed_in(con, "admin")
    response = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                    data={"csrf": await con.csrf(), **form})
    assert response.status_code == 400 and "use the button on its row" in response.text
    no_token = await con.http.post("/reconciliation/check", headers={"origin": con.origin},
                                   data={"kind": "charge", "object_id": "txn_x"})
    assert no_token.status_code == 403


async def test_settlement_of_a_day_lists_its_mismatches(seeded_console: tuple[InProcessConsole, Seeded]) -> None:
    con, seeded = seeded_console
    await signed_in(con, "viewer")
    # The simulator never saw the seeded payments: every success the gateway recorded at
    # the default processor that day is missing at the processor.
    newest = max((a for a in seeded.attempts if a["connector"] == "simulator" and a["status"] == "succeeded"
                  and a["kind"] == "charge" and a["created_at"] < now_us() - DAY_US),
                 key=lambda a: a["created_at"])
    day = dt.datetime.fromtimestamp(newest["created_at"] / 1e6, dt.UTC).date()
    page = await con.http.get("/reconciliation", params={"date": day.isoformat()})
    assert page.status_code == 200
    assert "missing at processor" in page.text and newest["reference"] in page.text
    assert f"paygate reconcile settlement --date {day}" in page.text


@pytest.mark.parametrize(("params", "says"), [
    ({"date": "yesterday"}, "must be a day like"),
    ({"date": "2026-02-30"}, "must be a day like"),
    ({"date": "9999-01-01"}, "has not happened yet"),
    ({"date": "<tomorrow>"}, "has not happened yet"),  # the day after the test runs (not after it is collected)
    ({"date": "20260101"}, "must be a day like"),  # date.fromisoformat's other spellings: not a day here
    ({"date": "2026-01-01", "settlement_after": "not-a-cursor"}, "not valid"),
    ({"date": "2026-01-01", "settlement_after": "missing_in_gateway.authorization.x"}, "not valid"),
    ({"date": "2026-01-01", "account": "acct'; drop table"}, "processor account id"),
    ({"date": "2026-01-01", "account": "pa_doesnotexist"}, "no processor account"),
    ({"after": "not-a-cursor"}, "not valid"),
    ({"after": "9" * 30 + ".charge.x"}, "not valid"),
])
async def test_settlement_and_queue_refuse_hostile_parameters(
        seeded_console: tuple[InProcessConsole, Seeded], params: dict[str, str], says: str) -> None:
    con, _ = seeded_console
    await signed_in(con, "viewer")
    if params.get("date") == "<tomorrow>":  # a run across midnight UTC would ask for "today"
        params = {**params, "date": (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()}
    page = await con.http.get("/reconciliation", params=params)
    assert page.status_code == 400 and says in page.text
    assert "Traceback" not in page.text
