"""Webhook retention (storage/webhook_prune.py, webhooks/retention.py), on both databases,
with a fake clock: what goes at the retention's boundary and what never goes (a pending
delivery, a leased one, an event with a delivery left, an object's latest event), batches
bounded, pruners at once, and the setting refused when malformed."""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text, update

from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage import webhook_endpoints as endpoints
from paygate_server.storage.schema_history import webhook_deliveries, webhook_events
from paygate_server.storage.webhook_events import NewEvent, insert_events, last_event_types
from paygate_server.storage.webhook_prune import count_prunable, prune_batch
from paygate_server.webhooks.retention import prune
from tests.server.cdc.conftest import db, new_merchant  # noqa: F401 (fixture)
from tests.support.databases import opened_database

DAY = 86_400 * 1_000_000
SETTINGS = Settings(webhook_retention_s=30 * 86_400, webhook_prune_batch_rows=3)
RETENTION = SETTINGS.webhook_retention_s * 1_000_000
NOW = 100 * DAY  # the fake clock: every time below is set, never read from the host
BEFORE = NOW - RETENTION  # rows last updated before this may go


async def _shop(database: Database, endpoint_count: int = 1) -> tuple[str, list[str]]:
    merchant = await new_merchant(database)
    ids = []
    async with database.write() as conn:
        for n in range(endpoint_count):
            endpoint = await endpoints.insert_endpoint(
                conn, endpoint_id=f"we_{n}{merchant}", merchant_id=merchant, url=f"https://a.test/{n}",
                events=None, secret_sealed=b"\x00sealed", now=1)
            ids.append(endpoint.id)
    return merchant, ids


async def _events(database: Database, merchant: str, objects: list[str], *, at: int) -> list[str]:
    """One event per object given (in order: change ids ascending), created ``at``."""
    async with database.read() as conn:
        last = (await conn.execute(text("SELECT coalesce(max(change_id), 0) FROM webhook_events"))).scalar_one()
    events = [NewEvent(f"evt_{last + n}_{merchant}", merchant, "payment_intent.succeeded", last + n,
                       obj, obj, "{}") for n, obj in enumerate(objects, start=1)]
    async with database.write() as conn:
        await insert_events(conn, events, at, kept_for_disabled_us=0)
    return [e.id for e in events]


async def _set(database: Database, event_id: str, **values: object) -> None:
    async with database.write() as conn:
        await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.event_id == event_id).values(**values))


async def _finish(database: Database, event_id: str, status: str, at: int) -> None:
    """The delivery finished ``at`` (its last attempt's lease ended then too)."""
    await _set(database, event_id, status=status, updated_at=at, next_attempt_at=at, lease_until=None)


async def _left(database: Database) -> tuple[set[str], set[tuple[str, str]]]:
    async with database.read() as conn:
        events = {r[0] for r in await conn.execute(select(webhook_events.c.id))}
        deliveries = {(r[0], r[1]) for r in await conn.execute(
            select(webhook_deliveries.c.event_id, webhook_deliveries.c.status))}
    return events, deliveries


async def test_a_finished_delivery_goes_once_its_last_update_is_older_than_the_retention(
        db: Database) -> None:  # noqa: F811
    shop, _ = await _shop(db)
    # Each event is superseded by a later one of its object (the last, kept: see below).
    old_delivered, old_failed, at_the_boundary, young = await _events(db, shop, ["pi_a"] * 4, at=BEFORE - 5 * DAY)
    latest, = await _events(db, shop, ["pi_a"], at=NOW)  # its delivery pending
    await _finish(db, old_delivered, "delivered", BEFORE - 1)
    await _finish(db, old_failed, "failed", BEFORE - 1)
    await _finish(db, at_the_boundary, "failed", BEFORE)  # exactly the retention old: kept
    await _finish(db, young, "delivered", NOW - DAY)
    assert await count_prunable(db, BEFORE) == (2, 0)
    done = await prune(db, SETTINGS, NOW)
    assert (done.deliveries, done.events) == (2, 2)  # their events went with them
    events, deliveries = await _left(db)
    assert old_delivered not in events and old_failed not in events
    assert {e for e, _ in deliveries} == {at_the_boundary, young, latest}
    # One microsecond later the boundary's goes too, and its event (created long before).
    done = await prune(db, SETTINGS, NOW + 1)
    assert (done.deliveries, done.events) == (1, 1)
    events, deliveries = await _left(db)
    assert at_the_boundary not in events and {e for e, _ in deliveries} == {young, latest}


async def test_a_pending_or_leased_delivery_is_never_deleted_nor_its_event(db: Database) -> None:  # noqa: F811
    shop, _ = await _shop(db)
    retried, leased, done_one = await _events(db, shop, ["pi_a", "pi_a", "pi_a"], at=0)
    await _events(db, shop, ["pi_a"], at=0)  # the object's latest event
    # Still being retried since the beginning of time (or replayed and due): pending.
    await _set(db, retried, status="pending", updated_at=0, next_attempt_at=0)
    # A finished row with a lease on it: the dispatcher's, whatever its status says.
    await _set(db, leased, status="delivered", updated_at=0, next_attempt_at=0, lease_until=NOW + DAY)
    await _finish(db, done_one, "delivered", 0)
    done = await prune(db, SETTINGS, NOW)
    assert (done.deliveries, done.events) == (1, 1)
    events, deliveries = await _left(db)
    assert {retried, leased} <= events and done_one not in events
    assert {e for e, _ in deliveries} >= {retried, leased}
    assert (retried, "pending") in deliveries


async def test_an_event_goes_only_once_no_delivery_is_left_and_a_later_event_says_its_objects_status(
        db: Database) -> None:  # noqa: F811
    """Two endpoints: the event stays while one of its deliveries does. And each object keeps
    its latest event: the webhook consumer reads it for the object's status once the change
    log was pruned — without it a refund of a payment older than the retention would send
    its ``payment_intent.succeeded`` again, under a new webhook-id."""
    shop, _ = await _shop(db, endpoint_count=2)
    first, latest = await _events(db, shop, ["pi_a", "pi_a"], at=0)
    other_object, = await _events(db, shop, ["pi_b"], at=0)
    for event in (first, latest, other_object):
        await _finish(db, event, "delivered", 0)
    async with db.write() as conn:  # one of the first event's two deliveries was replayed lately
        await conn.execute(update(webhook_deliveries).where(
            webhook_deliveries.c.event_id == first, webhook_deliveries.c.endpoint_id.like("we_1%"))
            .values(updated_at=NOW - DAY))
    done = await prune(db, SETTINGS, NOW)
    assert (done.deliveries, done.events) == (5, 0)
    events, deliveries = await _left(db)
    assert events == {first, latest, other_object} and deliveries == {(first, "delivered")}
    # The replayed one ages past the retention: it goes, and the event it kept with it —
    # found through its object, though the scan of old events went past it long ago.
    done = await prune(db, SETTINGS, NOW + RETENTION)
    assert (done.deliveries, done.events) == (1, 1)
    events, deliveries = await _left(db)
    assert events == {latest, other_object} and deliveries == set()
    async with db.read() as conn:
        assert await last_event_types(conn, ["pi_a", "pi_b"]) == {
            "pi_a": "payment_intent.succeeded", "pi_b": "payment_intent.succeeded"}
    # A later event of pi_b, once old too, lets its earlier one go (the scan passed that long ago).
    newer, = await _events(db, shop, ["pi_b"], at=NOW)
    await _finish(db, newer, "failed", NOW)
    done = await prune(db, SETTINGS, NOW + 2 * RETENTION)
    assert (done.deliveries, done.events) == (2, 1)
    assert (await _left(db))[0] == {latest, newer}


async def test_each_batch_is_bounded_and_the_pass_goes_on_until_none_is_left(db: Database) -> None:  # noqa: F811
    shop, _ = await _shop(db)
    ids = await _events(db, shop, ["pi_a"] * 11, at=0)
    for event in ids[:-1]:
        await _finish(db, event, "delivered", 0)
    await _finish(db, ids[-1], "failed", 0)
    first = await prune_batch(db, BEFORE, batch=3, now=NOW)
    # At most 3 deliveries of each status, and the events of at most 3 scanned ones and of
    # the deliveries deleted (their object's, pi_a's: all but its latest with none left).
    assert (first.deliveries, first.more) == (3 + 1, True)
    assert first.events == 3  # the failed one's event is pi_a's latest: kept
    done = await prune(db, SETTINGS, NOW)  # batches of 3 (SETTINGS) until a batch is short
    assert (done.deliveries, done.events) == (7, 7)
    assert done.batches == 3  # 3 + 3 + 1: the last, short, ends the pass
    events, deliveries = await _left(db)
    assert events == {ids[-1]} and deliveries == set()


async def test_two_pruners_at_once_delete_each_row_once(db: Database, fresh_database_url: str) -> None:  # noqa: F811
    shop, _ = await _shop(db, endpoint_count=2)
    ids = await _events(db, shop, [f"pi_{n % 5}" for n in range(40)], at=0)
    for n, event in enumerate(ids):
        await _finish(db, event, "delivered" if n % 2 else "failed", 0)
    async with opened_database(fresh_database_url) as other:
        one, two = await asyncio.gather(prune(db, SETTINGS, NOW), prune(other, SETTINGS, NOW))
    assert one.deliveries + two.deliveries == 80
    assert one.events + two.events == 40 - 5  # each object keeps its latest
    assert (await _left(db))[1] == set()


async def test_a_pruner_passes_over_rows_another_transaction_holds(db: Database, fresh_database_url: str) -> None:  # noqa: F811
    """PostgreSQL: a replay (or another pruner) holding a row's lock does not hold the pruner
    up — it takes the others — and the row, replayed meanwhile, is kept (``pending``)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: a pruner waits for the write lock")
    shop, _ = await _shop(db)
    ids = await _events(db, shop, ["pi_a"] * 6, at=0)
    for event in ids:
        await _finish(db, event, "failed", 0)
    async with opened_database(fresh_database_url) as other, other.write() as replay:
        await replay.execute(update(webhook_deliveries).where(webhook_deliveries.c.event_id == ids[0])
                             .values(status="pending", updated_at=NOW, next_attempt_at=NOW))
        done = await asyncio.wait_for(prune(db, SETTINGS, NOW), timeout=20)
        assert done.deliveries == 5
    events, deliveries = await _left(db)
    assert deliveries == {(ids[0], "pending")} and ids[0] in events


@pytest.mark.parametrize("raw", ["30d", "-1", "", "3600", "1e9"])
def test_a_malformed_retention_is_refused_naming_its_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=r"^PAYGATE_WEBHOOK_RETENTION_S: ") as refused:
        Settings.from_env({"PAYGATE_WEBHOOK_RETENTION_S": raw})
    assert "\n" not in str(refused.value)
    assert Settings.from_env({"PAYGATE_WEBHOOK_RETENTION_S": "604800"}).webhook_retention_s == 604_800
    assert Settings.from_env({}).webhook_retention_s == 30 * 86_400
