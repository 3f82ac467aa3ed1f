"""Events derived from the change stream: one per status transition, exactly once per change."""
from __future__ import annotations

from sqlalchemy import insert, select

from paygate_server import jsoncodec
from paygate_server.cdc.relay import Relay
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.schema import refunds
from paygate_server.storage.schema_history import cdc_offsets, webhook_deliveries, webhook_events
from paygate_server.webhooks.events import WebhookConsumer
from paygate_server.webhooks.model import create_endpoint
from tests.server.cdc.conftest import db, new_intent, new_merchant, touch  # noqa: F401 (fixture)
from tests.support.app import TEST_MASTER_KEY

FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)


async def _events(database: Database) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    async with database.read() as conn:
        rows = (await conn.execute(select(webhook_events).order_by(webhook_events.c.change_id))).all()
    return [(r.type, jsoncodec.loads(r.payload)) for r in rows]


async def test_status_transitions_become_events_exactly_once(db: Database) -> None:  # noqa: F811
    merchant = await new_merchant(db)
    async with db.write() as conn:
        await create_endpoint(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), merchant, "http://h.test/", None)
        pid = await new_intent(conn, merchant, amount=500)
    for status in ("in_progress", "failed", "in_progress", "succeeded"):
        async with db.write() as conn:
            await touch(conn, pid, status)
    async with db.write() as conn:
        await touch(conn, pid)  # a refund reservation: amountRefunded moves, the status does not
        now = now_us()
        await conn.execute(insert(refunds).values(
            id="re_test000000000000001", intent_id=pid, merchant_id=merchant, transaction_id="txn_x",
            reference="rref_1", amount=200, currency="USD", status="pending", reason="damaged",
            created_at=now, updated_at=now))
    async with db.write() as conn:
        await conn.execute(refunds.update().where(refunds.c.id == "re_test000000000000001")
                           .values(status="succeeded", updated_at=now_us()))

    await Relay(db, FAST, [WebhookConsumer(batch_size=3)]).drain()
    events = await _events(db)
    assert [t for t, _ in events] == [
        "payment_intent.created", "payment_intent.in_progress", "payment_intent.failed",
        "payment_intent.in_progress", "payment_intent.succeeded", "refund.succeeded"]
    refund = events[-1][1]["data"]
    assert refund == {"refundId": "re_test000000000000001", "paymentIntentId": pid, "amount": 200,
                      "currency": "USD", "status": "succeeded", "reason": "damaged", "failureReason": None}
    assert events[0][1]["data"]["paymentIntentId"] == pid and "clientSecret" not in events[0][1]["data"]

    # The offset is lost and every change is delivered again: no event is made twice.
    async with db.write() as conn:
        await conn.execute(cdc_offsets.delete().where(cdc_offsets.c.consumer == "webhooks"))
    await Relay(db, FAST, [WebhookConsumer(batch_size=4)]).drain()
    assert len(await _events(db)) == 6
    async with db.read() as conn:
        assert len((await conn.execute(select(webhook_deliveries))).all()) == 6


async def test_an_authorized_manual_capture_is_an_event(db: Database) -> None:  # noqa: F811
    merchant = await new_merchant(db)
    async with db.write() as conn:
        await create_endpoint(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), merchant, "http://h.test/", None)
        pid = await new_intent(conn, merchant, amount=500)
    for status in ("in_progress", "requires_capture", "in_progress", "succeeded"):
        async with db.write() as conn:
            await touch(conn, pid, status)
    await Relay(db, FAST, [WebhookConsumer(batch_size=10)]).drain()
    assert [t for t, _ in await _events(db)] == [
        "payment_intent.created", "payment_intent.in_progress", "payment_intent.requires_capture",
        "payment_intent.in_progress", "payment_intent.succeeded"]
