"""The console's Reconciliation page lists settled outcomes a processor contradicted later
(``late_outcomes``), escaped, open first; an admin marks one handled (CSRF, the console's
audit); support and viewer see it but cannot (SPEC §12 gives support no reconcile;
docs/processors.md, "Adyen")."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from paygate_server.clock import now_us
from paygate_server.console.actions import recent_actions
from paygate_server.storage.late_outcomes import mark_handled
from paygate_server.storage.port import LateOutcome
from tests.server.console.conftest import InProcessConsole, running_console
from tests.server.console.test_console_overview_http import signed_in
from tests.support.app import test_settings as make_settings

HOSTILE = '<script>alert("x")</script> refused by the scheme'


@pytest.fixture
async def con(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessConsole]:
    async with running_console(make_settings(fresh_database_url, tmp_path)) as c:
        yield c


async def _late(con: InProcessConsole) -> LateOutcome:
    late = LateOutcome(kind="refund", object_id="re_late1", intent_id="pi_late1", merchant_id="mer_late",
                       connector="pa_adyen1", gateway_status="succeeded", processor_status="failed",
                       processor_text=HOSTILE, received_at=now_us())
    assert await con.console.gateway.payments.record_late_outcome(late)
    [stored] = await con.console.gateway.payments.late_outcomes(limit=10)
    return stored


async def test_a_late_outcome_is_listed_escaped_and_a_viewer_cannot_mark_it(con: InProcessConsole) -> None:
    late = await _late(con)
    await signed_in(con, "viewer")
    page = await con.http.get("/reconciliation")
    assert page.status_code == 200
    section = page.text.split('id="late"')[1].split('id="settlement"')[0]
    assert "re_late1" in section and "pi_late1" in section and "pa_adyen1" in section
    assert "&lt;script&gt;" in section and "<script>alert" not in page.text
    assert ">Mark handled</button>" not in section and "open" in section
    refused = await con.http.post("/reconciliation/late", headers={"origin": con.origin},
                                  data={"csrf": await con.csrf(), "id": str(late.id)})
    assert refused.status_code == 403
    [still] = await con.console.gateway.payments.late_outcomes(limit=10)
    assert still.handled_at is None


async def test_a_support_operator_cannot_mark_one_handled(con: InProcessConsole) -> None:
    late = await _late(con)
    await signed_in(con, "support")
    page = await con.http.get("/reconciliation")
    assert page.status_code == 200 and ">Mark handled</button>" not in page.text
    refused = await con.http.post("/reconciliation/late", headers={"origin": con.origin},
                                  data={"csrf": await con.csrf(), "id": str(late.id)})
    assert refused.status_code == 403 and "role cannot" in refused.text
    [still] = await con.console.gateway.payments.late_outcomes(limit=10)
    assert still.handled_at is None
    assert await recent_actions(con.console.gateway.db, limit=5, target=f"late_{late.id}") == []


async def test_an_admin_marks_one_handled_and_it_is_recorded(con: InProcessConsole) -> None:
    late = await _late(con)
    await signed_in(con, "admin")
    page = await con.http.get("/reconciliation")
    assert ">Mark handled</button>" in page.text
    no_token = await con.http.post("/reconciliation/late", headers={"origin": con.origin}, data={"id": str(late.id)})
    assert no_token.status_code == 403
    for hostile in ("x", "1; drop table", "9" * 40, ""):
        bad = await con.http.post("/reconciliation/late", headers={"origin": con.origin},
                                  data={"csrf": await con.csrf(), "id": hostile})
        assert bad.status_code == 400 and "use the button on its row" in bad.text
    done = await con.http.post("/reconciliation/late", headers={"origin": con.origin},
                               data={"csrf": await con.csrf(), "id": str(late.id)})
    assert done.status_code == 200 and "Marked handled." in done.text
    assert ">Mark handled</button>" not in done.text.split('id="late"')[1].split('id="settlement"')[0]
    [handled] = await con.console.gateway.payments.late_outcomes(limit=10)
    assert handled.handled_at is not None and handled.handled_by is not None and handled.handled_by.startswith("op_")
    [action] = await recent_actions(con.console.gateway.db, limit=5, target=f"late_{late.id}")
    assert (action.action, action.operator_id) == ("reconcile.late_outcome_handled", handled.handled_by)
    again = await con.http.post("/reconciliation/late", headers={"origin": con.origin},
                                data={"csrf": await con.csrf(), "id": str(late.id)})
    assert again.status_code == 200 and "handled already" in again.text
    assert len(await recent_actions(con.console.gateway.db, limit=5, target=f"late_{late.id}")) == 1


async def test_the_overview_counts_the_open_ones_and_links_to_them(con: InProcessConsole) -> None:
    """Next to the reconciler's backlog, on the page and in its refreshed totals; a handled
    one no longer counts."""
    await signed_in(con, "viewer")

    def count_on(page: str) -> str:
        return page.split('<a href="/reconciliation#late" data-total="late_outcomes_open">')[1].split("</a>")[0]

    assert count_on((await con.http.get("/")).text) == "0"
    late = await _late(con)
    assert count_on((await con.http.get("/")).text) == "1"
    assert (await con.http.get("/overview.json")).json()["totals"]["late_outcomes_open"] == 1
    async with con.console.gateway.db.write() as conn:
        assert await mark_handled(conn, late.id, "op_overview", now_us())
    assert count_on((await con.http.get("/")).text) == "0"
    assert (await con.http.get("/overview.json")).json()["totals"]["late_outcomes_open"] == 0
