"""The webhook store's operations, each on both databases: endpoints, events with their
deliveries, and the dispatcher's queue (claims, outcomes, replay, the endpoint's limit)."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text

from paygate_server.storage import Database
from paygate_server.storage import webhook_endpoints as endpoints
from paygate_server.storage.schema_history import webhook_deliveries
from paygate_server.storage.webhook_deliveries import DeliveryQueue, DueDelivery
from paygate_server.storage.webhook_events import NewEvent, entity_statuses, insert_events
from tests.server.cdc.conftest import db, new_intent, new_merchant, touch  # noqa: F401 (fixture)
from tests.support.databases import opened_database
from tests.support.eventually import eventually


async def _endpoint(db: Database, merchant: str, url: str, events: list[str] | None = None,  # noqa: F811
                    now: int = 1) -> endpoints.Endpoint:
    async with db.write() as conn:
        return await endpoints.insert_endpoint(conn, endpoint_id=f"we_{url[-1]}{merchant}", merchant_id=merchant,
                                               url=url, events=events, secret_sealed=b"\x00sealed", now=now)


def _event(change_id: int, merchant: str, type_: str = "payment_intent.created", *, retry: int = 0) -> NewEvent:
    """An event for one change; each delivery of a change makes a fresh event id (``retry``)."""
    return NewEvent(f"evt_{change_id}_{retry}{merchant}", merchant, type_, change_id, "pi_x", "pi_x",
                    f'{{"n": {change_id}}}')


async def test_endpoints_create_list_count_delete(db: Database) -> None:  # noqa: F811
    shop, other = await new_merchant(db), await new_merchant(db)
    first = await _endpoint(db, shop, "https://a.test/1", ["refund.succeeded"], now=10)
    second = await _endpoint(db, shop, "https://a.test/2", None, now=20)
    assert first == endpoints.Endpoint(first.id, shop, "https://a.test/1", ("refund.succeeded",), "enabled", None, 10)
    async with db.read() as conn:
        assert await endpoints.list_endpoints(conn, shop) == [second, first]  # newest first, as written
        assert await endpoints.count_active(conn, shop) == 2
        assert await endpoints.list_endpoints(conn, other) == []
    async with db.write() as conn:
        assert not await endpoints.delete_endpoint(conn, other, first.id, 30)  # not theirs
        assert await endpoints.delete_endpoint(conn, shop, first.id, 30)
        assert not await endpoints.delete_endpoint(conn, shop, first.id, 31)  # gone already
    async with db.read() as conn:
        assert await endpoints.list_endpoints(conn, shop) == [second]
        assert await endpoints.count_active(conn, shop) == 1


async def test_events_once_per_change_with_a_delivery_per_subscribed_endpoint(db: Database) -> None:  # noqa: F811
    shop = await new_merchant(db)
    every = await _endpoint(db, shop, "https://a.test/1")
    refunds_only = await _endpoint(db, shop, "https://a.test/2", ["refund.succeeded"])
    events = [_event(1, shop), _event(2, shop, "refund.succeeded")]
    async with db.write() as conn:
        assert await insert_events(conn, events, 5, kept_for_disabled_us=0) == 3
    async with db.write() as conn:  # the same changes again (a re-delivered batch): nothing new
        again = [_event(1, shop, retry=1), _event(2, shop, "refund.succeeded", retry=1)]
        assert await insert_events(conn, again, 6, kept_for_disabled_us=0) == 0
    queue = DeliveryQueue(db)
    due = await queue.due(5, 10)
    assert sorted((d.event_id, d.endpoint_id) for d in due) == sorted(
        [(events[0].id, every.id), (events[1].id, every.id), (events[1].id, refunds_only.id)])
    assert await queue.due(4, 10) == []  # not due yet
    assert {d.endpoint_id for d in await queue.due(5, 10, skip_endpoints=[every.id])} == {refunds_only.id}
    target = await queue.target(events[0].id, every.id)
    assert target is not None
    assert (target.payload, target.url, target.endpoint_status, target.secret_sealed, target.attempts) == (
        '{"n": 1}', "https://a.test/1", "enabled", b"\x00sealed", 0)


async def test_previous_statuses_come_from_the_history(db: Database) -> None:  # noqa: F811
    shop = await new_merchant(db)
    async with db.write() as conn:
        pid = await new_intent(conn, shop)
    async with db.write() as conn:
        await touch(conn, pid, "in_progress")
    async with db.read() as conn:
        found = await entity_statuses(conn, [pid, "pi_none"])
    assert sorted(found, key=lambda s: s[2]) == [
        ("payment_intent", pid, 1, "created"), ("payment_intent", pid, 2, "in_progress")]


async def test_claims_outcomes_and_replay(db: Database) -> None:  # noqa: F811
    shop = await new_merchant(db)
    endpoint = await _endpoint(db, shop, "https://a.test/1")
    async with db.write() as conn:
        await insert_events(conn, [_event(1, shop), _event(2, shop)], 5, kept_for_disabled_us=0)
    queue = DeliveryQueue(db)
    first, second = sorted(await queue.due(5, 10), key=lambda d: d.event_id)
    async with queue.claiming(5, 100, endpoint_ids=[endpoint.id], per_endpoint=4) as claim:
        assert await claim(first)
        assert not await claim(first)  # its next_attempt_at moved: another dispatcher's read is stale
        assert not await claim(DueDelivery(second.event_id, second.endpoint_id, 4))
    assert [d.event_id for d in await queue.due(99, 10)] == [second.event_id]  # the lease holds it
    async with queue.claiming(5, 105, endpoint_ids=[endpoint.id], per_endpoint=4) as claim:
        assert await claim(second)

    assert await queue.finish(first.event_id, endpoint.id, lease_until=100, status="delivered", attempts=1,
                              status_code=200, error=None, now=50)
    assert await queue.finish(second.event_id, endpoint.id, lease_until=105, status="pending", attempts=1,
                              status_code=500, error="HTTP 500", now=50, next_at=70)
    assert not await queue.finish(first.event_id, endpoint.id, lease_until=100, status="failed", attempts=9,
                                  status_code=None, error="late", now=60)  # only a pending delivery takes an outcome
    recent = {r["event_id"]: r for r in await queue.recent(merchant_id=shop)}
    assert (recent[first.event_id]["status"], recent[first.event_id]["delivered_at"],
            recent[first.event_id]["last_status_code"]) == ("delivered", 50, 200)
    assert (recent[second.event_id]["status"], recent[second.event_id]["next_attempt_at"],
            recent[second.event_id]["last_error"]) == ("pending", 70, "HTTP 500")

    async with queue.claiming(80, 180, endpoint_ids=[endpoint.id], per_endpoint=4) as claim:
        assert await claim(DueDelivery(second.event_id, endpoint.id, 70))
    assert await queue.finish(second.event_id, endpoint.id, lease_until=180, status="failed", attempts=2,
                              status_code=410, error="x" * 600, now=80, disable_endpoint="the endpoint answered 410 Gone")
    [failed] = await queue.recent(status="failed")
    assert failed["event_id"] == second.event_id and failed["last_error"] == "x" * 500
    async with db.read() as conn:
        assert (await endpoints.list_endpoints(conn, shop))[0].status == "disabled"

    assert await queue.replay_failed(90, merchant_id="mer_other") == 0
    assert await queue.replay_failed(90, endpoint_id=endpoint.id) == 1
    async with db.read() as conn:
        assert (await endpoints.list_endpoints(conn, shop))[0].status == "enabled"
    assert [(d.event_id, d.next_attempt_at) for d in await queue.due(90, 10)] == [(second.event_id, 90)]
    replayed = {r["event_id"]: r for r in await queue.recent(merchant_id=shop)}[second.event_id]
    assert (replayed["status"], replayed["attempts"], replayed["last_status_code"], replayed["last_error"]) == (
        "pending", 0, None, None)  # not a 410 the fresh schedule has not met


@pytest.fixture
async def other_db(fresh_database_url: str) -> AsyncIterator[Database]:
    """A second handle on ``db``'s database: a pool of its own, as another process has."""
    async with opened_database(fresh_database_url) as database:
        yield database


async def _backlog(db: Database, count: int) -> tuple[endpoints.Endpoint, list[DueDelivery]]:  # noqa: F811
    """An endpoint with ``count`` deliveries due at 5."""
    shop = await new_merchant(db)
    endpoint = await _endpoint(db, shop, "https://a.test/1")
    async with db.write() as conn:
        await insert_events(conn, [_event(n, shop) for n in range(1, count + 1)], 5, kept_for_disabled_us=0)
    return endpoint, sorted(await DeliveryQueue(db).due(5, count), key=lambda d: d.event_id)


async def _claimed(queue: DeliveryQueue, now: int, endpoint_id: str, rows: list[DueDelivery]) -> list[str]:
    async with queue.claiming(now, now + 100, endpoint_ids=[endpoint_id], per_endpoint=2) as claim:
        return [row.event_id for row in rows if await claim(row)]


async def test_an_endpoints_limit_counts_the_leases_of_every_process_until_they_run_out(
        db: Database, other_db: Database) -> None:  # noqa: F811
    endpoint, rows = await _backlog(db, 5)
    one, another = DeliveryQueue(db), DeliveryQueue(other_db)  # two processes' pools
    assert await _claimed(one, 10, endpoint.id, rows[:1]) == [rows[0].event_id]
    assert await _claimed(another, 10, endpoint.id, rows[1:]) == [rows[1].event_id]  # one slot left of 2
    assert await _claimed(one, 10, endpoint.id, rows[2:]) == []
    async with one.claiming(10, 110, endpoint_ids=["we_other"], per_endpoint=9) as claim:
        assert not await claim(rows[2])  # an endpoint the round did not name (nor lock)
    assert await another.due(10, 10, full_at=2) == []  # the endpoint is full: its backlog is left out
    assert len(await another.due(10, 10, full_at=3)) == 3

    # An outcome frees its slot; a lease that ran out (its process died) stops counting then.
    await one.finish(rows[0].event_id, endpoint.id, lease_until=110, status="delivered", attempts=1,
                     status_code=200, error=None, now=20)
    assert await _claimed(another, 20, endpoint.id, rows[2:]) == [rows[2].event_id]
    assert await _claimed(one, 109, endpoint.id, rows[3:]) == []  # rows[1]'s lease runs until 110
    assert await _claimed(one, 110, endpoint.id, rows[3:]) == [rows[3].event_id]
    async with db.read() as conn:
        leases = (await conn.execute(select(webhook_deliveries.c.event_id, webhook_deliveries.c.lease_until)
                                     .where(webhook_deliveries.c.lease_until.is_not(None)))).all()
    assert sorted(leases) == [(rows[1].event_id, 110), (rows[2].event_id, 120), (rows[3].event_id, 210)]


async def _waiting_for_a_lock(db: Database) -> bool:  # noqa: F811
    """PostgreSQL: whether some transaction waits for an advisory lock."""
    async with db.read() as conn:
        return bool((await conn.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))).scalar_one())


async def test_claimers_of_one_endpoint_take_turns(db: Database, other_db: Database) -> None:  # noqa: F811
    endpoint, rows = await _backlog(db, 4)
    first, second = DeliveryQueue(db), DeliveryQueue(other_db)
    async with first.claiming(10, 110, endpoint_ids=[endpoint.id], per_endpoint=2) as claim:
        assert [await claim(row) for row in rows[:2]] == [True, True]  # not committed yet
        # Another process's round, counting while the first is still open: it must wait for
        # the first's commit, or it would count none of its leases and take two more.
        rival = asyncio.create_task(_claimed(second, 10, endpoint.id, rows[2:]))
        if not db.is_sqlite:  # (SQLite: its write lock, whoever comes first)
            await eventually(lambda: _waiting_for_a_lock(other_db), until=lambda w: w or rival.done(),
                             what="the second claimer waiting for the first")
    assert await rival == []
    async with db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(webhook_deliveries)
                                   .where(webhook_deliveries.c.lease_until > 10))).scalar_one() == 2


async def _delivery_row(db: Database, event_id: str) -> tuple[str, int, int, int | None, str | None]:  # noqa: F811
    """(status, attempts, next_attempt_at, lease_until, last_error) of the event's delivery."""
    async with db.read() as conn:
        row = (await conn.execute(select(
            webhook_deliveries.c.status, webhook_deliveries.c.attempts, webhook_deliveries.c.next_attempt_at,
            webhook_deliveries.c.lease_until, webhook_deliveries.c.last_error)
            .where(webhook_deliveries.c.event_id == event_id))).one()
    return row[0], row[1], row[2], row[3], row[4]


async def test_an_outcome_is_recorded_only_under_the_lease_its_attempt_claimed(
        db: Database, other_db: Database) -> None:  # noqa: F811
    endpoint, rows = await _backlog(db, 3)
    one, another = DeliveryQueue(db), DeliveryQueue(other_db)
    assert await _claimed(one, 10, endpoint.id, rows[:1]) == [rows[0].event_id]  # its lease: until 110
    # That attempt outlives its lease; another process claims the delivery again.
    assert await _claimed(another, 110, endpoint.id, [DueDelivery(rows[0].event_id, endpoint.id, 110)]) == [
        rows[0].event_id]  # until 210

    # The first attempt's late outcome finds another lease: nothing of it is recorded.
    assert not await one.finish(rows[0].event_id, endpoint.id, lease_until=110, status="pending", attempts=1,
                                status_code=500, error="HTTP 500", now=120, next_at=130)
    assert await _delivery_row(db, rows[0].event_id) == ("pending", 0, 210, 210, None)
    async with one.claiming(120, 220, endpoint_ids=[endpoint.id], per_endpoint=1) as claim:
        assert not await claim(rows[1])  # the second attempt still holds the endpoint's one slot
    assert sorted(d.event_id for d in await one.due(150, 10)) == [rows[1].event_id, rows[2].event_id]

    # The second attempt's outcome is recorded, and frees the slot.
    assert await another.finish(rows[0].event_id, endpoint.id, lease_until=210, status="delivered", attempts=1,
                                status_code=200, error=None, now=150)
    assert await _delivery_row(db, rows[0].event_id) == ("delivered", 1, 210, None, None)
    # An attempt that outlived its lease with nobody claiming it since still records its outcome.
    assert await _claimed(one, 150, endpoint.id, rows[1:2]) == [rows[1].event_id]  # until 250
    assert await one.finish(rows[1].event_id, endpoint.id, lease_until=250, status="pending", attempts=1,
                            status_code=503, error="HTTP 503", now=300, next_at=400)
    assert await _delivery_row(db, rows[1].event_id) == ("pending", 1, 400, None, "HTTP 503")


@pytest.mark.parametrize("gone", ["event", "endpoint"])
async def test_a_delivery_whose_event_or_endpoint_row_is_gone_says_which(db: Database, gone: str) -> None:  # noqa: F811
    endpoint, [row] = await _backlog(db, 1)
    queue = DeliveryQueue(db)
    async with db.write() as conn:  # (nothing deletes them today; a restore or a hand might)
        if gone == "event":
            await conn.execute(text("DELETE FROM webhook_events WHERE id = :id"), {"id": row.event_id})
        else:
            await conn.execute(text("DELETE FROM webhook_endpoints WHERE id = :id"), {"id": endpoint.id})
    target = await queue.target(row.event_id, endpoint.id)
    assert target is not None and (target.missing, target.endpoint_id, target.attempts) == (gone, endpoint.id, 0)
    assert await queue.target("evt_none", endpoint.id) is None  # no such delivery
