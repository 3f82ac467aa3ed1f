"""The webhook store's operations, each on both databases: endpoints, events with their
deliveries, and the dispatcher's queue (claims, outcomes, replay)."""
from __future__ import annotations

from paygate_server.storage import Database
from paygate_server.storage import webhook_endpoints as endpoints
from paygate_server.storage.webhook_deliveries import DeliveryQueue, DueDelivery
from paygate_server.storage.webhook_events import NewEvent, entity_statuses, insert_events
from tests.server.cdc.conftest import db, new_intent, new_merchant, touch  # noqa: F401 (fixture)


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
        assert await insert_events(conn, events, 5) == 3
    async with db.write() as conn:  # the same changes again (a re-delivered batch): nothing new
        again = [_event(1, shop, retry=1), _event(2, shop, "refund.succeeded", retry=1)]
        assert await insert_events(conn, again, 6) == 0
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
        await insert_events(conn, [_event(1, shop), _event(2, shop)], 5)
    queue = DeliveryQueue(db)
    first, second = sorted(await queue.due(5, 10), key=lambda d: d.event_id)
    async with queue.claiming(lease_until=100) as claim:
        assert await claim(first)
        assert not await claim(first)  # its next_attempt_at moved: another dispatcher's read is stale
        assert not await claim(DueDelivery(second.event_id, second.endpoint_id, 4))
    assert [d.event_id for d in await queue.due(99, 10)] == [second.event_id]  # the lease holds it

    await queue.finish(first.event_id, endpoint.id, status="delivered", attempts=1, status_code=200,
                       error=None, now=50)
    await queue.finish(second.event_id, endpoint.id, status="pending", attempts=1, status_code=500,
                       error="HTTP 500", now=50, next_at=70)
    await queue.finish(first.event_id, endpoint.id, status="failed", attempts=9, status_code=None,
                       error="late", now=60)  # only a pending delivery takes an outcome
    recent = {r["event_id"]: r for r in await queue.recent(merchant_id=shop)}
    assert (recent[first.event_id]["status"], recent[first.event_id]["delivered_at"],
            recent[first.event_id]["last_status_code"]) == ("delivered", 50, 200)
    assert (recent[second.event_id]["status"], recent[second.event_id]["next_attempt_at"],
            recent[second.event_id]["last_error"]) == ("pending", 70, "HTTP 500")

    await queue.finish(second.event_id, endpoint.id, status="failed", attempts=2, status_code=410,
                       error="x" * 600, now=80)
    await queue.disable_endpoint(endpoint.id, "the endpoint answered 410 Gone", 80)
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
