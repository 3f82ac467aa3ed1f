"""The console's storage reads (storage/console_reads.py) on SQLite and PostgreSQL: payment
search and its pages, a payment's page, the reconciliation queue, the overview and the
per-minute samples every worker writes."""
from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from paygate_server.clock import now_us
from paygate_server.observability import extension, middleware
from paygate_server.observability.console_sampler import ConsoleSampler, MinuteLatency
from paygate_server.storage import console_search, create_database
from paygate_server.storage.console_overview import POINTS, quantile
from paygate_server.storage.console_reads import (
    InvalidSearch,
    PaymentRow,
    PaymentSearch,
    overview,
    payment_detail,
    reconciliation_queue,
    search_payments,
)
from paygate_server.storage.console_samples import (
    LATENCY_BOUNDS_S,
    prune_samples,
    sample_backlogs,
    write_latency,
)
from paygate_server.storage.engine import Database
from tests.support.app import running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.console_seed import COMMON_LAST4, MINUTE_US, Seeded, seed_payments
from tests.support.databases import opened_database
from tests.support.slow_set import is_slow_run

NOW = now_us()


@pytest.fixture
async def db(fresh_database_url: str) -> AsyncIterator[Database]:
    async with opened_database(fresh_database_url) as database:
        yield database


@pytest.fixture
async def seeded(db: Database) -> Seeded:
    return await seed_payments(db, 400, merchants=4, now=NOW)


async def every_page(db: Database, search: PaymentSearch) -> list[PaymentRow]:
    rows: list[PaymentRow] = []
    page = await search_payments(db, search)
    rows += page.rows
    while page.next_cursor is not None:
        page = await search_payments(db, dataclasses.replace(search, after=page.next_cursor))
        rows += page.rows
    return rows


def newest_first(intents: list[dict]) -> list[str]:
    return [i["id"] for i in sorted(intents, key=lambda i: (i["created_at"], i["id"]), reverse=True)]


# --- search --------------------------------------------------------------------------------


async def test_pages_return_every_payment_once_newest_first(db: Database, seeded: Seeded) -> None:
    rows = await every_page(db, PaymentSearch(limit=37))
    assert [r.id for r in rows] == newest_first(seeded.intents)
    assert len({r.id for r in rows}) == 400


@pytest.mark.parametrize("common_past", [console_search.COMMON_CARD, 10], ids=["few", "common"])
async def test_search_by_last4_finds_exactly_the_payments_with_that_card(
        db: Database, seeded: Seeded, common_past: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_search, "COMMON_CARD", common_past)  # both ways of finding them
    rare = next(a["card_last4"] for a in seeded.attempts if a["card_last4"] != COMMON_LAST4)
    for last4 in (rare, COMMON_LAST4):
        expected = {a["intent_id"] for a in seeded.attempts if a["card_last4"] == last4}
        rows = await every_page(db, PaymentSearch(card_last4=last4, limit=25))
        assert [r.id for r in rows] == newest_first([i for i in seeded.intents if i["id"] in expected])
        assert {r.card_last4 for r in rows} == {last4}
    unused = next(f"{n:04d}" for n in range(10_000) if f"{n:04d}" not in {a["card_last4"] for a in seeded.attempts})
    assert (await search_payments(db, PaymentSearch(card_last4=unused))).rows == []


async def test_amount_and_date_filters_include_their_edges(db: Database, seeded: Seeded) -> None:
    amounts = sorted(i["amount"] for i in seeded.intents)
    low, high = amounts[50], amounts[300]
    rows = await every_page(db, PaymentSearch(amount_min=low, amount_max=high, limit=200))
    assert [r.id for r in rows] == newest_first([i for i in seeded.intents if low <= i["amount"] <= high])
    assert {r.amount for r in rows} >= {low, high}

    one = seeded.intents[123]
    exact = await search_payments(db, PaymentSearch(created_from=one["created_at"], created_to=one["created_at"]))
    assert one["id"] in [r.id for r in exact.rows]
    times = sorted(i["created_at"] for i in seeded.intents)
    start, end = times[100], times[200]
    rows = await every_page(db, PaymentSearch(created_from=start, created_to=end, limit=30))
    assert [r.id for r in rows] == newest_first([i for i in seeded.intents if start <= i["created_at"] <= end])
    assert len(rows) == 101


async def test_filters_combine(db: Database, seeded: Seeded) -> None:
    merchant = seeded.merchants[1]
    rows = await every_page(db, PaymentSearch(merchant_id=merchant, status="succeeded", limit=20))
    assert [r.id for r in rows] == newest_first(
        [i for i in seeded.intents if i["merchant_id"] == merchant and i["status"] == "succeeded"])
    one = seeded.intents[7]
    page = await search_payments(db, PaymentSearch(intent_id=one["id"]))
    assert [r.id for r in page.rows] == [one["id"]] and page.next_cursor is None
    assert (await search_payments(db, PaymentSearch(intent_id=one["id"], merchant_id="mer_other"))).rows == []


async def test_a_row_shows_the_card_of_the_latest_attempt(db: Database, seeded: Seeded) -> None:
    rows = {r.id: r for r in await every_page(db, PaymentSearch(limit=200))}
    for intent in seeded.intents:
        cards = [a for a in seeded.attempts if a["intent_id"] == intent["id"] and a["kind"] in ("charge", "authorization")]
        row = rows[intent["id"]]
        if cards:
            latest = max(cards, key=lambda a: (a["created_at"], a["id"]))
            assert (row.card_brand, row.card_last4) == (latest["card_brand"], latest["card_last4"])
        else:
            assert (row.card_brand, row.card_last4) == (None, None)
        assert (row.amount, row.amount_received, row.amount_refunded, row.status) == (
            intent["amount"], intent["amount_received"], intent["amount_refunded"], intent["status"])


@pytest.mark.parametrize("bad", [
    {"card_last4": "42a2"}, {"card_last4": "424"}, {"limit": 0}, {"limit": 201}, {"amount_min": -1},
    {"amount_max": 2**63}, {"after": "garbage"}, {"after": "99999999999999999999.pi_x"}, {"status": ""},
    {"merchant_id": "m" * 65}, {"created_from": "1"},
])
async def test_a_search_it_cannot_take_says_why(bad: dict) -> None:
    with pytest.raises(InvalidSearch) as raised:
        PaymentSearch(**bad)
    assert str(raised.value)


async def test_an_empty_database_has_no_payments(db: Database) -> None:
    page = await search_payments(db, PaymentSearch(card_last4="4242"))
    assert page.rows == [] and page.next_cursor is None


# --- a payment's page -----------------------------------------------------------------------


async def test_detail_has_attempts_refunds_and_webhooks_but_never_a_card_fingerprint(
        db: Database, seeded: Seeded) -> None:
    refund = seeded.refunds[0]
    intent_id = refund["intent_id"]
    async with db.write() as conn:
        await conn.execute(text(
            "INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret_sealed, status, created_at,"
            " updated_at) VALUES ('we_1', :m, 'https://shop.example/hooks', NULL, :s, 'enabled', 1, 1)"),
            {"m": refund["merchant_id"], "s": b"sealed"})
        await conn.execute(text(
            "INSERT INTO webhook_events (id, merchant_id, type, change_id, intent_id, object_id, payload, created_at)"
            " VALUES ('evt_1', :m, 'payment_intent.succeeded', 900001, :i, :i, '{}', 5),"
            " ('evt_2', :m, 'refund.succeeded', 900002, :i, :r, '{}', 6)"),
            {"m": refund["merchant_id"], "i": intent_id, "r": refund["id"]})
        await conn.execute(text(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, merchant_id, status, attempts, next_attempt_at,"
            " last_status_code, last_error, created_at, updated_at, delivered_at) VALUES"
            " ('evt_1', 'we_1', :m, 'delivered', 1, 5, 200, NULL, 5, 5, 5),"
            " ('evt_2', 'we_1', :m, 'pending', 3, 99, 503, 'HTTP 503', 6, 7, NULL)"), {"m": refund["merchant_id"]})

    detail = await payment_detail(db, intent_id)
    assert detail is not None
    assert detail.intent.id == intent_id and detail.intent.amount_refunded == refund["amount"]
    attempts = [a for a in seeded.attempts if a["intent_id"] == intent_id]
    assert [(a.id, a.kind, a.status, a.connector, a.reference, a.processor_id) for a in detail.attempts] == [
        (a["id"], a["kind"], a["status"], a["connector"], a["reference"], a["processor_id"]) for a in attempts]
    assert [(r.id, r.amount, r.status) for r in detail.refunds] == [(refund["id"], refund["amount"], "succeeded")]
    assert [(e.id, e.type) for e in detail.webhook_events] == [("evt_1", "payment_intent.succeeded"),
                                                              ("evt_2", "refund.succeeded")]
    pending = detail.webhook_events[1].deliveries[0]
    assert (pending.url, pending.status, pending.attempts, pending.last_status_code, pending.last_error) == (
        "https://shop.example/hooks", "pending", 3, 503, "HTTP 503")

    shown = repr(detail)
    for attempt in attempts:
        assert attempt["card_fingerprint"] not in shown
    fields = {f.name for view in (detail.intent, detail.attempts[0]) for f in dataclasses.fields(view)}
    assert not fields & {"card_fingerprint", "vault_id", "card_exp_month", "card_exp_year", "client_secret_hash"}


async def test_detail_of_an_intent_with_nothing_yet_and_of_no_intent(db: Database, seeded: Seeded) -> None:
    bare = next(i for i in seeded.intents if i["status"] == "created")
    detail = await payment_detail(db, bare["id"])
    assert detail is not None and detail.attempts == [] and detail.refunds == [] and detail.webhook_events == []
    assert await payment_detail(db, "pi_doesnotexist") is None


# --- the reconciliation queue --------------------------------------------------------------


async def test_queue_lists_unknown_operations_oldest_first_with_the_last_answer(db: Database, seeded: Seeded) -> None:
    assert seeded.queue, "the seed makes some unknown attempts"
    settled = [a for a in seeded.attempts if a["status"] == "succeeded" and a["kind"] == "charge"]
    async with db.write() as conn:  # a pending attempt just begun, and one older than the window
        for n, age, young in ((1, 5_000_000, settled[0]), (2, 10 * MINUTE_US, settled[1])):
            await conn.execute(text(
                "INSERT INTO transactions (id, intent_id, merchant_id, status, reference, connector, amount, currency,"
                " created_at, updated_at, kind) VALUES (:id, :i, :m, 'pending', :ref, 'pa_seedalpha', 10, 'USD',"
                " :t, :t, 'charge')"), {"id": f"txn_pend{n}", "i": young["intent_id"], "m": young["merchant_id"],
                                        "ref": f"ref_pend{n}", "t": NOW - age})
            await conn.execute(text(
                "INSERT INTO reconcile_queue (kind, object_id, intent_id, merchant_id, due_at, checks, last_result,"
                " created_at) VALUES ('charge', :id, :i, :m, :t, 0, NULL, :t)"),
                {"id": f"txn_pend{n}", "i": young["intent_id"], "m": young["merchant_id"], "t": NOW - age})

    rows = []
    page = await reconciliation_queue(db, 3, None, now=NOW)
    rows += page.rows
    while page.next_cursor:
        page = await reconciliation_queue(db, 3, page.next_cursor, now=NOW)
        rows += page.rows
    expected = sorted([(q["created_at"], q["object_id"]) for q in seeded.queue] + [(NOW - 10 * MINUTE_US, "txn_pend2")])
    assert [(r.created_at, r.object_id) for r in rows] == expected
    unknown = next(r for r in rows if r.object_id == seeded.queue[0]["object_id"])
    attempt = next(a for a in seeded.attempts if a["id"] == unknown.object_id)
    assert (unknown.status, unknown.last_result, unknown.connector, unknown.reference, unknown.checks) == (
        "unknown", "timeout", attempt["connector"], attempt["reference"], 1)
    assert unknown.age_us == NOW - unknown.created_at
    stale = rows[[r.object_id for r in rows].index("txn_pend2")]
    assert (stale.status, stale.last_result, stale.age_us) == ("pending", None, 10 * MINUTE_US)

    with pytest.raises(InvalidSearch):
        await reconciliation_queue(db, 10, "1.charge")
    with pytest.raises(InvalidSearch):
        await reconciliation_queue(db, 0)


# --- the overview --------------------------------------------------------------------------


def settled_in_window(seeded: list[Seeded], now: int) -> dict[str, int]:
    first = (now // MINUTE_US - POINTS + 1) * MINUTE_US
    names = {("charge", "succeeded"): "succeeded", ("authorization", "succeeded"): "requires_capture",
             ("capture", "succeeded"): "captured", ("void", "succeeded"): "canceled",
             ("charge", "failed"): "failed", ("authorization", "failed"): "failed", ("charge", "unknown"): "unknown"}
    counts: dict[str, int] = {}
    for s in seeded:
        for a in s.attempts:
            name = names.get((a["kind"], a["status"]))
            if name and a["updated_at"] >= first:
                counts[name] = counts.get(name, 0) + 1
    return counts


async def test_overview_counts_every_workers_payments(fresh_database_url: str) -> None:
    """Two handles on one database, as two workers (or hosts) are: each writes its payments
    and its latency; the overview adds them all up."""
    one, two = create_database(fresh_database_url), create_database(fresh_database_url)
    try:
        first = await seed_payments(one, 150, merchants=2, now=NOW, prefix="a")
        second = await seed_payments(two, 150, merchants=2, now=NOW, prefix="b")
        fast, slow = [0] * (len(LATENCY_BOUNDS_S) + 1), [0] * (len(LATENCY_BOUNDS_S) + 1)
        fast[0], slow[7] = 60, 40  # 60 requests within 1 ms on one worker, 40 within 250 ms on the other
        minute = NOW // MINUTE_US * 60
        await write_latency(one, "host-a:1:x", {minute: fast})
        await write_latency(two, "host-b:1:y", {minute: slow})

        seen = await overview(one, now=NOW)
        expected = settled_in_window([first, second], NOW)
        totals = {name: sum(getattr(p, name) for p in seen.outcomes)
                  for name in ("succeeded", "requires_capture", "captured", "canceled", "failed", "unknown")}
        assert totals == {name: expected.get(name, 0) for name in totals}
        assert sum(totals.values()) > 0
        route_total = sum(p.approved + p.declined + p.unknown for points in seen.routes.values() for p in points)
        assert route_total == sum(1 for s in (first, second) for a in s.attempts
                                  if a["updated_at"] >= seen.minutes[0] * 1_000_000)
        assert set(seen.routes) <= {"simulator", "pa_seedalpha", "pa_seedbeta"}

        latest = seen.latency[-1]
        merged = [a + b for a, b in zip(fast, slow, strict=True)]
        assert latest.requests == 100
        assert latest.p50_ms == round(quantile(0.5, merged) * 1000, 3)  # type: ignore[operator]
        assert latest.p99_ms == round(quantile(0.99, merged) * 1000, 3)  # type: ignore[operator]
        assert latest.p50_ms is not None and latest.p50_ms <= 1.0 < latest.p99_ms  # type: ignore[operator]
        assert all(p.p50_ms is None and p.requests == 0 for p in seen.latency[:-1])

        rates = [r.success_rate for r in seen.success_rate if r.success_rate is not None]
        assert rates and all(0.0 <= r <= 1.0 for r in rates)
    finally:
        await one.dispose()
        await two.dispose()


async def test_processor_outcomes_are_counted_per_account_and_outcome(db: Database, seeded: Seeded) -> None:
    """SPEC §12: approved / declined / unknown per processor account — each answer under the
    route its attempt went to, not just a total that adds up."""
    seen = await overview(db, now=NOW)
    answer = {"succeeded": "approved", "failed": "declined", "unknown": "unknown"}
    expected: dict[tuple[str, str], int] = {}
    for a in seeded.attempts:
        if a["status"] in answer and a["updated_at"] >= seen.minutes[0] * 1_000_000:
            key = (a["connector"], answer[a["status"]])
            expected[key] = expected.get(key, 0) + 1
    got = {(route, name): total for route, points in seen.routes.items()
           for name in ("approved", "declined", "unknown") if (total := sum(getattr(p, name) for p in points))}
    assert got == expected
    assert {route for route, _ in expected} == {"simulator", "pa_seedalpha", "pa_seedbeta"}
    assert {name for _, name in expected} == {"approved", "declined", "unknown"}


async def test_backlogs_are_sampled_once_a_minute_by_whoever_comes_first(fresh_database_url: str) -> None:
    one, two = create_database(fresh_database_url), create_database(fresh_database_url)
    try:
        seeded = await seed_payments(one, 200, merchants=2, now=NOW)
        minute = NOW // MINUTE_US * 60
        assert await sample_backlogs(one, minute) is True
        assert await sample_backlogs(two, minute) is False
        points = (await overview(two, now=NOW)).backlogs
        assert points[-1].reconcile == len(seeded.queue) and points[-1].webhooks == 0
        assert all(p.reconcile is None and p.webhooks is None for p in points[:-1])
    finally:
        await one.dispose()
        await two.dispose()


async def test_an_empty_database_has_60_empty_points(db: Database) -> None:
    seen = await overview(db, now=NOW)
    assert len(seen.minutes) == POINTS and seen.minutes[-1] == NOW // MINUTE_US * 60
    assert [m - seen.minutes[0] for m in seen.minutes] == [60 * i for i in range(POINTS)]
    for series in (seen.outcomes, seen.success_rate, seen.backlogs, seen.latency):
        assert [p.minute for p in series] == seen.minutes
    assert all(sum(p[1:]) == 0 for p in seen.outcomes)
    assert all(r.success_rate is None for r in seen.success_rate)
    assert all(p.p50_ms is None and p.p99_ms is None and p.requests == 0 for p in seen.latency)
    assert seen.routes == {}


async def test_a_worker_sampler_writes_its_minutes_and_prunes_old_ones(db: Database) -> None:
    latency = MinuteLatency()
    now_s = NOW / 1_000_000
    minute = int(now_s) // 60 * 60
    for seconds in (0.0005, 0.003, 0.003, 0.2):
        latency.observe(seconds, now_s)
    latency.observe(0.004, now_s - 60)  # the minute before: written once more, then forgotten
    await write_latency(db, "old", {minute - 25 * 3600: [1] + [0] * len(LATENCY_BOUNDS_S)})

    sampler = ConsoleSampler(db, "host-a:7:abc", latency)
    await sampler.flush(now_s)
    seen = await overview(db, now=NOW)
    assert (seen.latency[-2].requests, seen.latency[-1].requests) == (1, 4)
    assert latency.take(now_s).keys() == {minute}  # the finished minute is gone from memory
    latency.observe(0.003, now_s)
    await sampler.flush(now_s)  # the current minute's row is replaced, not added to
    assert (await overview(db, now=NOW)).latency[-1].requests == 5
    assert await prune_samples(db, minute - 24 * 3600) == 0  # the flush deleted the 25 h old row already
    assert seen.backlogs[-1].reconcile == 0


async def test_the_gateways_requests_reach_the_overview(
        fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the app: the metrics middleware counts each request into the worker's
    minute, its sampler (the observability extension's background task) writes it."""
    latency = MinuteLatency()
    monkeypatch.setattr(middleware, "MINUTE_LATENCY", latency)
    async with running_gateway(gateway_settings(fresh_database_url, tmp_path)) as gw:
        tasks = extension.background_tasks(gw.gateway)
        assert len(tasks) == 1
        tasks[0].close()  # built, not run: the test flushes by hand
        for _ in range(3):
            assert (await gw.http.get("/no/such/path")).status_code == 404
        monkeypatch.setattr(middleware, "MINUTE_LATENCY", MinuteLatency())  # nothing more counted here
        await ConsoleSampler(gw.gateway.db, "w1", latency).flush()
        seen = await overview(gw.gateway.db)
        assert sum(p.requests for p in seen.latency[-2:]) == 3


def test_quantiles_interpolate_within_a_bucket() -> None:
    counts = [0] * (len(LATENCY_BOUNDS_S) + 1)
    counts[1] = 10  # ten requests between 1 and 2.5 ms
    assert quantile(0.5, counts) == pytest.approx(0.00175)
    counts[-1] = 1000  # slower than the last bound
    assert quantile(0.99, counts) == LATENCY_BOUNDS_S[-1]
    assert quantile(0.5, [0] * len(counts)) is None


# --- at the load check's size ----------------------------------------------------------------


@pytest.mark.slow
async def test_reads_count_right_at_100000_payments(db: Database, fresh_database_url: str,
                                                    request: pytest.FixtureRequest) -> None:
    """The load check's database (docs/perf/console_load.py: speed is in docs/perf/console.md,
    not asserted here): the reads still find exactly what is there. SQLite seeds it in ~40 s;
    PostgreSQL took 58–106 s here (past this suite's budget of ~60 s), so there the load
    script is the check at this size and the tests above check the same reads."""
    if not is_slow_run(request.config, {"slow"}):
        pytest.skip("100,000 payments: in the slow set only (the tests above check the same reads at a small size)")
    if fresh_database_url.startswith("postgres"):
        pytest.skip("seeding 100,000 payments takes 58-106 s on PostgreSQL; docs/perf/console_load.py covers it")
    seeded = await seed_payments(db, 100_000, now=NOW)
    held = await every_page(db, PaymentSearch(status="in_progress", limit=200))
    assert [r.id for r in held] == newest_first([i for i in seeded.intents if i["status"] == "in_progress"])
    rare = next(a["card_last4"] for a in seeded.attempts if a["card_last4"] != COMMON_LAST4)
    found = await every_page(db, PaymentSearch(card_last4=rare, limit=10))
    assert {r.id for r in found} == {a["intent_id"] for a in seeded.attempts if a["card_last4"] == rare}
    merchant = seeded.merchants[5]
    page = await search_payments(db, PaymentSearch(merchant_id=merchant, amount_min=1999, amount_max=2098, limit=200))
    assert [r.id for r in page.rows] == newest_first(
        [i for i in seeded.intents if i["merchant_id"] == merchant and 1999 <= i["amount"] <= 2098])[:200]

    queue = []
    cursor = None
    while True:
        stuck = await reconciliation_queue(db, 200, cursor, now=NOW)
        queue += stuck.rows
        if (cursor := stuck.next_cursor) is None:
            break
    assert sorted(r.object_id for r in queue) == sorted(q["object_id"] for q in seeded.queue)

    seen = await overview(db, now=NOW)
    expected = settled_in_window([seeded], NOW)
    assert {name: sum(getattr(p, name) for p in seen.outcomes) for name in expected} == expected
