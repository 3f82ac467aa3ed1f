"""Webhook events derived from the change stream (a relay consumer).

A status transition of an intent (its insert, or an update whose ``status`` differs from
the previous snapshot) becomes ``payment_intent.<status>``; a refund reaching
``succeeded`` becomes ``refund.succeeded``. Other changes (a transaction row, a refund
reservation bumping ``amountRefunded``) make no event. The payload is fixed at creation —
``{"type", "timestamp", "data"}`` with the object in the API's wire shape as of that
change — and every enabled endpoint of the merchant subscribed to the type gets a
delivery row. The relay runs this inside the transaction that records its offset, so each
change yields its event exactly once (``change_id`` is unique besides).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.cdc.changes import Change, Position
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.db.dialect import insert_ignore
from paygate_server.db.schema import change_log
from paygate_server.db.schema_history import webhook_deliveries, webhook_endpoints, webhook_events
from paygate_server.ids import new_id
from paygate_server.intents.schemas import render_intent
from paygate_server.refunds.service import render_refund

__all__ = ["WebhookConsumer", "event_for"]

_INTENT_EVENTS = {"created", "in_progress", "succeeded", "failed", "canceled"}


def event_for(change: Change, snapshot: Mapping[str, Any], previous_status: str | None) -> tuple[str, Any] | None:
    """The event type and wire object for this change, or None."""
    status = snapshot.get("status")
    if status == previous_status:
        return None
    if change.entity == "payment_intent" and status in _INTENT_EVENTS:
        return f"payment_intent.{status}", render_intent(snapshot)
    if change.entity == "refund" and status == "succeeded":
        return "refund.succeeded", render_refund(snapshot)
    return None


async def _previous_status(conn: AsyncConnection, change: Change) -> str | None:
    data = (await conn.execute(
        select(change_log.c.data)
        .where(change_log.c.intent_id == change.intent_id, change_log.c.entity == change.entity,
               change_log.c.entity_id == change.entity_id, change_log.c.intent_seq < change.intent_seq)
        .order_by(change_log.c.intent_seq.desc()).limit(1))).scalar()
    return None if data is None else jsoncodec.loads(data).get("status")


class WebhookConsumer:
    name = "webhooks"
    transactional = True
    linger_s = 0.0

    def __init__(self, *, batch_size: int, on_created: Callable[[], None] | None = None) -> None:
        self.batch_size = batch_size
        self._on_created = on_created
        self._created = 0

    async def start(self) -> Position | None:
        return None

    async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None:
        assert conn is not None
        last_status: dict[tuple[str, str], str | None] = {}
        endpoints: dict[str, list[tuple[str, list[str] | None]]] = {}
        now = now_us()
        for change in changes:
            if change.entity not in ("payment_intent", "refund"):
                continue
            snapshot = change.snapshot()
            key = (change.entity, change.entity_id)
            if change.op == "insert":
                previous = None
            elif key in last_status:
                previous = last_status[key]
            else:
                previous = await _previous_status(conn, change)
            last_status[key] = snapshot.get("status")
            found = event_for(change, snapshot, previous)
            if found is None:
                continue
            type_, obj = found
            event_id = new_id("evt")
            payload = jsoncodec.dumps({"type": type_, "timestamp": to_rfc3339(change.created_at), "data": obj})
            inserted = await insert_ignore(conn, webhook_events, {
                "id": event_id, "merchant_id": change.merchant_id, "type": type_, "change_id": change.id,
                "intent_id": change.intent_id, "object_id": change.entity_id, "payload": payload.decode(),
                "created_at": now})
            if not inserted:
                continue  # this change's event exists already (a re-delivered batch)
            if change.merchant_id not in endpoints:
                rows = await conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.events).where(
                    webhook_endpoints.c.merchant_id == change.merchant_id,
                    webhook_endpoints.c.status == "enabled"))
                endpoints[change.merchant_id] = [
                    (r.id, jsoncodec.loads(r.events) if r.events else None) for r in rows]
            targets = [eid for eid, types in endpoints[change.merchant_id] if types is None or type_ in types]
            if targets:
                await conn.execute(insert(webhook_deliveries), [
                    {"event_id": event_id, "endpoint_id": eid, "merchant_id": change.merchant_id,
                     "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
                     "updated_at": now} for eid in targets])
                self._created += len(targets)

    def after_commit(self) -> None:
        if self._created and self._on_created is not None:
            self._on_created()
        self._created = 0

    async def close(self) -> None:
        return None
