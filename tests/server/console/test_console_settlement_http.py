"""The console's settlement of a day over HTTP (httpx → ASGI, the real lifespan), SQLite and
PostgreSQL, against a simulator process of the test's own: a busy day's mismatches a page
at a time, every one listed once across the pages, the counts the whole day's."""
from __future__ import annotations

import datetime as dt
import html
import re
from collections import Counter
from pathlib import Path

import httpx

from paygate_server.clock import now_us
from paygate_server.console.pages.reconciliation import SETTLEMENT_PAGE_SIZE, settlement_page
from paygate_server.processing.settlement import PROBLEMS, Mismatch, reconcile_settlement
from paygate_server.simulator.testing import SimulatorProcess, TestCards, charge_payload
from paygate_server.storage import create_database
from paygate_server.storage.bulk_payments import insert_payments
from tests.server.console.conftest import running_console
from tests.support.app import test_settings as make_settings
from tests.support.console_seed import make_payments

_ROW = re.compile(r"<tr><td>(charge|capture|refund)</td><td>([a-z ]+)</td><td><code>([^<]+)</code>")
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
_STRANGERS = 60  # settled by the processor, unknown to the gateway: more than a page alone


async def test_a_busy_days_mismatches_are_paged_and_counted_whole(fresh_database_url: str, tmp_path: Path) -> None:
    now = now_us()
    seeded = make_payments(150, merchants=2, now=now, seed=23)
    # Every charge the gateway made at the default processor: made a second ago (today).
    ours = [a for a in seeded.attempts if a["connector"] == "simulator" and a["kind"] == "charge"]
    for attempt in ours:
        attempt["created_at"], attempt["updated_at"] = now - 1_000_000, now - 900_000
    db = create_database(fresh_database_url)
    try:
        await insert_payments(db, merchant_rows=[{"id": m, "name": m, "created_at": now} for m in seeded.merchants],
                              intents=seeded.intents, attempts=seeded.attempts, refund_rows=seeded.refunds,
                              queue_rows=seeded.queue)
    finally:
        await db.dispose()
    succeeded = [a for a in ours if a["status"] == "succeeded"]
    failed = [a for a in ours if a["status"] == "failed"]
    assert len(succeeded) > 3 and failed

    with SimulatorProcess(tmp_path / "simulator.db") as simulator:
        async with httpx.AsyncClient(base_url=simulator.base_url, timeout=10.0) as sim:
            settled = []
            # A processor's references may hold dots: the page's cursor keeps them whole.
            for i in range(_STRANGERS):
                settled.append(charge_payload(TestCards.VISA, reference=f"ref.busy.{i:04d}", amount=700 + i))
            for a in succeeded[:3]:  # ours, settled for another amount
                settled.append(charge_payload(TestCards.VISA, reference=a["reference"], amount=a["amount"] + 1))
            settled.append(charge_payload(TestCards.VISA, reference=failed[0]["reference"], amount=1000))
            for body in settled:
                assert (await sim.post("/v1/charges", json=body)).status_code == 200
        settings = make_settings(fresh_database_url, tmp_path, processor_url=simulator.base_url)
        async with running_console(settings) as con:
            assert (await con.log_in(await con.operator("viewer"))).status_code == 303
            day = dt.datetime.fromtimestamp(now / 1e6, dt.UTC).date()
            gateway = con.console.gateway
            everything, counts = await reconcile_settlement(gateway.payments, gateway.reconciler.connector, day)
            problems = Counter(m.problem for m in everything)
            assert problems["missing_in_gateway"] == _STRANGERS and problems["amount_differs"] == 3
            assert problems["status_differs"] == 1 and problems["missing_at_processor"] >= len(succeeded) - 3
            total = len(everything)
            assert total > SETTLEMENT_PAGE_SIZE and counts["mismatches"] == total

            seen: list[tuple[str, str, str]] = []
            url: str | None = f"/reconciliation?date={day}"
            pages = 0
            while url is not None:
                page = await con.http.get(url)
                assert page.status_code == 200, page.text
                pages += 1
                rows = _ROW.findall(page.text)
                assert 0 < len(rows) <= SETTLEMENT_PAGE_SIZE
                # The counts are the whole day's on every page, per problem too.
                assert f"<strong>{total} mismatches</strong>" in page.text
                for problem, n in problems.items():
                    assert f'data-problem="{problem}">{n} {problem.replace("_", " ")}<' in page.text
                first = len(seen) + 1
                assert f"Mismatches {first}–{first + len(rows) - 1} of {total}" in page.text
                assert f"paygate reconcile settlement --date {day} --json" in page.text
                seen += rows
                found = _NEXT.search(page.text)
                url = html.unescape(found.group(1)) if found else None
                if url is not None:
                    assert url.startswith(f"/reconciliation?date={day}&settlement_after=")
            assert pages == -(-total // SETTLEMENT_PAGE_SIZE)
            assert len(seen) == len(set(seen)) == total
            assert sorted(seen) == sorted((m.kind, m.problem.replace("_", " "), m.reference) for m in everything)
            # Grouped by problem (the order of PROBLEMS), then by kind and reference.
            ranks = [PROBLEMS.index(problem.replace(" ", "_")) for _, problem, _ in seen]
            assert ranks == sorted(ranks)

            past = await con.http.get(f"/reconciliation?date={day}&settlement_after=amount_differs.refund.zzz")
            assert past.status_code == 200 and "No more mismatches" in past.text and not _ROW.findall(past.text)
            assert f"<strong>{total} mismatches</strong>" in past.text

            # Paging through one of the page's two lists keeps the other where it was: the
            # queue's links keep the day's comparison and its page, and the reverse.
            second = "missing_at_processor.charge.ref"  # a settlement cursor, kept as it is
            end = "9223372036854775806.refund.z"  # past every queued operation
            both = await con.http.get(f"/reconciliation?date={day}&settlement_after={second}&after={end}")
            assert both.status_code == 200 and "No more operations" in both.text
            hrefs = {html.unescape(h) for h in re.findall(r'<a href="(/reconciliation\?[^"]*)"', both.text)}
            assert f"/reconciliation?date={day}&settlement_after={second}#queue" in hrefs, hrefs  # back to the oldest
            assert f"/reconciliation?after={end}&date={day}#settlement" in hrefs, hrefs  # the first mismatches


def _mismatch(problem: str, reference: str, kind: str = "charge") -> Mismatch:
    return Mismatch(kind, problem, reference, None, None, None)


def test_a_mismatch_resolved_between_pages_neither_repeats_nor_hides_one() -> None:
    day = [_mismatch("missing_at_processor", f"ref_{i:03d}") for i in range(7)]
    day.append(_mismatch("missing_in_gateway", "ref.with.dots"))
    rows, first, cursor = settlement_page(day, None, limit=3)
    assert first == 1 and [m.reference for m in rows] == ["ref.with.dots", "ref_000", "ref_001"]
    assert cursor == "missing_at_processor.charge.ref_001"
    # ref_000 (shown) and ref_002 (not yet) are resolved before the next page is asked for.
    later = [m for m in day if m.reference not in ("ref_000", "ref_002")]
    rows, first, cursor = settlement_page(later, cursor, limit=3)
    assert [m.reference for m in rows] == ["ref_003", "ref_004", "ref_005"] and first == 3
    rows, first, cursor = settlement_page(later, cursor, limit=3)
    assert [m.reference for m in rows] == ["ref_006"] and cursor is None
