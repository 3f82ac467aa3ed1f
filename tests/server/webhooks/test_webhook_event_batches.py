"""Events come out the same however the changes are batched, across consumer restarts and
failed deliveries; each event gets one delivery per endpoint subscribed to its type —
failed at once, for a replay, to one disabled (within its 30 days)."""
from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, update

from paygate_server import jsoncodec
from paygate_server.cdc.relay import Relay
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database, Transaction
from paygate_server.storage.changes import Change
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from paygate_server.webhooks.events import WebhookConsumer
from paygate_server.webhooks.model import create_endpoint
from tests.server.cdc.conftest import db, new_intent, new_merchant, touch  # noqa: F401 (fixture)
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually

FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)
MASTER = MasterKey(bytes.fromhex(TEST_MASTER_KEY))


async def _types(database: Database) -> list[tuple[str, str]]:
    async with database.read() as conn:
        rows = (await conn.execute(select(webhook_events).order_by(webhook_events.c.change_id))).all()
    return [(r.object_id, r.type) for r in rows]


async def _statuses(database: Database, intent_id: str, *statuses: str | None) -> None:
    for status in statuses:
        async with database.write() as conn:
            await touch(conn, intent_id, status)


async def test_previous_statuses_across_batches_and_restarts(db: Database) -> None:  # noqa: F811
    merchant = await new_merchant(db)
    async with db.write() as conn:
        a = await new_intent(conn, merchant)
        b = await new_intent(conn, merchant)
    await _statuses(db, a, "in_progress")
    # One change per batch: every previous status comes from an earlier batch (remembered).
    await Relay(db, FAST, [WebhookConsumer(batch_size=1)]).drain()
    # A restarted consumer knows nothing: the first previous status of each entity is
    # looked up, the rest come from the batch or the batches before.
    await _statuses(db, a, None, "failed", None, "in_progress")
    await _statuses(db, b, None, None)
    await Relay(db, FAST, [WebhookConsumer(batch_size=2)]).drain()
    await _statuses(db, a, None, "succeeded", None)
    await _statuses(db, b, "canceled")
    await Relay(db, FAST, [WebhookConsumer(batch_size=500)]).drain()
    assert await _types(db) == [
        (a, "payment_intent.created"), (b, "payment_intent.created"), (a, "payment_intent.in_progress"),
        (a, "payment_intent.failed"), (a, "payment_intent.in_progress"),
        (a, "payment_intent.succeeded"), (b, "payment_intent.canceled")]


class FailsOnce(WebhookConsumer):
    """Does all the work of its first delivery with an event, then fails (its transaction
    rolls back): what it saw must not count as delivered."""

    failed = False

    async def deliver(self, changes: list[Change], conn: Transaction | None) -> None:
        await super().deliver(changes, conn)
        if not self.failed and any(c.entity == "payment_intent" and c.op == "update" for c in changes):
            self.failed = True
            raise RuntimeError("the sink broke")


async def test_a_failed_delivery_is_redone_with_the_same_events(db: Database) -> None:  # noqa: F811
    merchant = await new_merchant(db)
    async with db.write() as conn:
        pid = await new_intent(conn, merchant)
    await Relay(db, FAST, [WebhookConsumer(batch_size=10)]).drain()
    consumer = FailsOnce(batch_size=10)
    relay = Relay(db, FAST, [consumer])
    task = asyncio.create_task(relay.run_forever())
    try:
        await _statuses(db, pid, "in_progress")
        relay.wake()
        await eventually(lambda: _types(db), until=lambda types: len(types) >= 2, timeout=20,
                         what="the in_progress event")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert consumer.failed and relay.stats["webhooks"].last_error is not None
    assert await _types(db) == [(pid, "payment_intent.created"), (pid, "payment_intent.in_progress")]


async def test_one_delivery_per_subscribed_endpoint(db: Database) -> None:  # noqa: F811
    shop, other = await new_merchant(db), await new_merchant(db)
    async with db.write() as conn:
        everything, _ = await create_endpoint(conn, MASTER, shop, "http://all.test/", None)
        canceled_only, _ = await create_endpoint(conn, MASTER, shop, "http://c.test/", ["payment_intent.canceled"])
        off, _ = await create_endpoint(conn, MASTER, shop, "http://off.test/", None)
        # Disabled (a 410) just now: its events are kept for a replay. Disabled longer than
        # the retention ago (updated_at: when it was disabled): none.
        await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == off.id)
                           .values(status="disabled", updated_at=now_us()))
        long_off, _ = await create_endpoint(conn, MASTER, shop, "http://long-off.test/", None)
        await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == long_off.id)
                           .values(status="disabled", updated_at=now_us() - Settings().webhook_retention_s * 1_000_000 - 60_000_000))
        gone, _ = await create_endpoint(conn, MASTER, shop, "http://gone.test/", None)
        await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == gone.id)
                           .values(status="deleted"))
        elsewhere, _ = await create_endpoint(conn, MASTER, other, "http://other.test/", None)
        x = await new_intent(conn, shop)
        y = await new_intent(conn, other)
    await _statuses(db, x, "canceled")
    await _statuses(db, y, "in_progress")
    await Relay(db, FAST, [WebhookConsumer(batch_size=500)]).drain()  # all in one batch
    async with db.read() as conn:
        events = {r.id: (r.object_id, r.type) for r in await conn.execute(select(webhook_events))}
        deliveries = sorted((events[r.event_id], r.endpoint_id, r.merchant_id, r.status, r.attempts, r.last_error)
                            for r in await conn.execute(select(webhook_deliveries)))
    expected: list[Any] = [
        ((x, "payment_intent.created"), everything.id, shop, "pending", 0, None),
        ((x, "payment_intent.canceled"), everything.id, shop, "pending", 0, None),
        ((x, "payment_intent.canceled"), canceled_only.id, shop, "pending", 0, None),
        ((x, "payment_intent.created"), off.id, shop, "failed", 0, "endpoint disabled"),
        ((x, "payment_intent.canceled"), off.id, shop, "failed", 0, "endpoint disabled"),
        ((y, "payment_intent.created"), elsewhere.id, other, "pending", 0, None),
        ((y, "payment_intent.in_progress"), elsewhere.id, other, "pending", 0, None),
    ]
    assert deliveries == sorted(expected)
    async with db.read() as conn:
        payloads = [jsoncodec.loads(r.payload) for r in await conn.execute(select(webhook_events))]
    assert {p["data"]["paymentIntentId"] for p in payloads} == {x, y}
