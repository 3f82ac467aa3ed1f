"""Webhook events derived from the change stream (a relay consumer).

A status transition of an intent (its insert, or an update whose ``status`` differs from
the previous snapshot) becomes ``payment_intent.<status>``; a refund reaching
``succeeded`` becomes ``refund.succeeded``. Other changes (a transaction row, a refund
reservation bumping ``amountRefunded``) make no event. The payload is fixed at creation —
``{"type", "timestamp", "data"}`` with the object in the API's wire shape as of that
change — and every enabled endpoint of the merchant subscribed to the type gets a
delivery row. The relay runs this inside the transaction that records its offset, so each
change yields its event exactly once (``change_id`` is unique besides).

Cost per batch, not per change: the previous status of an entity is known from the batch
itself or from the batches this consumer delivered before (remembered once they commit,
forgotten whenever the relay (re)starts the consumer), and only the rest is looked up, in
one query; events and their deliveries (to the merchants' endpoints, joined in SQL) are
written with one statement (PostgreSQL; two on SQLite), sent straight to the driver.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.cdc.changes import Change, Position
from paygate_server.cdc.relay import Consumer
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.ids import new_id
from paygate_server.intents.history import render_object
from paygate_server.storage.statements import Sql, execute, fetch_all

__all__ = ["WebhookConsumer", "event_for"]

_INTENT_EVENTS = {"created", "in_progress", "succeeded", "failed", "canceled"}
_ENTITIES = ("payment_intent", "refund")

# How many entities' last status the consumer remembers between batches (the oldest go).
KNOWN_STATUSES_MAX = 20_000

# Whatever the number of rows, one fixed statement: PostgreSQL takes arrays (unnest),
# SQLite a JSON array of rows (json_each). An event whose change has one already is skipped
# (a re-delivered batch), and so are its deliveries: only the events just inserted get one
# delivery per enabled endpoint of the merchant subscribed to the type.
_PG = {
    "previous": Sql("""
        SELECT entity, entity_id, intent_seq, data::jsonb ->> 'status' AS status FROM change_log
        WHERE intent_id = ANY(:intent_ids::text[]) AND entity IN ('payment_intent', 'refund')"""),
    # Events and their deliveries in one statement.
    "write": Sql("""
        WITH ev AS (
          INSERT INTO webhook_events (id, merchant_id, type, change_id, intent_id, object_id, payload, created_at)
          SELECT id, merchant_id, type, change_id, intent_id, object_id, payload, :now::bigint
          FROM unnest(:ids::text[], :merchant_ids::text[], :types::text[], :change_ids::bigint[],
                      :intent_ids::text[], :object_ids::text[], :payloads::text[])
               AS t(id, merchant_id, type, change_id, intent_id, object_id, payload)
          ON CONFLICT DO NOTHING RETURNING id, merchant_id, type)
        INSERT INTO webhook_deliveries (event_id, endpoint_id, merchant_id, status, attempts, next_attempt_at,
                                        created_at, updated_at)
        SELECT ev.id, ep.id, ev.merchant_id, 'pending', 0, :now::bigint, :now::bigint, :now::bigint
        FROM ev JOIN webhook_endpoints ep ON ep.merchant_id = ev.merchant_id AND ep.status = 'enabled'
        WHERE ep.events IS NULL OR ep.events::jsonb ? ev.type"""),
}
_SQLITE = {
    "previous": Sql("""
        SELECT entity, entity_id, intent_seq, json_extract(data, '$.status') AS status FROM change_log
        WHERE intent_id IN (SELECT value FROM json_each(:intent_ids))
          AND entity IN ('payment_intent', 'refund')"""),
    # (WHERE true: SQLite's rule for an upsert clause after INSERT ... SELECT)
    "events": Sql("""
        INSERT INTO webhook_events (id, merchant_id, type, change_id, intent_id, object_id, payload, created_at)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
               json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
               json_extract(value, '$[6]'), :now
        FROM json_each(:rows) WHERE true
        ON CONFLICT DO NOTHING"""),
    # Our fresh event ids exist only where the insert above did not skip the change.
    "deliveries": Sql("""
        INSERT INTO webhook_deliveries (event_id, endpoint_id, merchant_id, status, attempts, next_attempt_at,
                                        created_at, updated_at)
        SELECT ev.id, ep.id, ev.merchant_id, 'pending', 0, :now, :now, :now
        FROM webhook_events ev
        JOIN webhook_endpoints ep ON ep.merchant_id = ev.merchant_id AND ep.status = 'enabled'
        WHERE ev.id IN (SELECT value FROM json_each(:ids))
          AND (ep.events IS NULL OR ev.type IN (SELECT value FROM json_each(ep.events)))"""),
}


def event_for(change: Change, snapshot: Mapping[str, Any], previous_status: str | None) -> tuple[str, Any] | None:
    """The event type and wire object for this change, or None."""
    status = snapshot.get("status")
    if status == previous_status:
        return None
    if change.entity == "payment_intent" and status in _INTENT_EVENTS:
        return f"payment_intent.{status}", render_object(change.entity, snapshot)
    if change.entity == "refund" and status == "succeeded":
        return "refund.succeeded", render_object(change.entity, snapshot)
    return None


def _json(value: Any) -> str:
    return jsoncodec.dumps(value).decode()


async def _previous_statuses(conn: AsyncConnection,
                             first: Mapping[tuple[str, str], Change]) -> dict[tuple[str, str], Any]:
    """For each entity, the status of its latest change before the given one (None: none)."""
    intent_ids = sorted({c.intent_id for c in first.values()})
    if conn.dialect.name == "postgresql":
        rows = await fetch_all(conn, _PG["previous"], intent_ids=intent_ids)
    else:
        rows = await fetch_all(conn, _SQLITE["previous"], intent_ids=_json(intent_ids))
    best: dict[tuple[str, str], tuple[int, Any]] = {}
    for row in rows:
        key = (row["entity"], row["entity_id"])
        change = first.get(key)
        if change is None or row["intent_seq"] >= change.intent_seq:
            continue
        if key not in best or row["intent_seq"] > best[key][0]:
            best[key] = (row["intent_seq"], row["status"])
    return {key: found[1] for key, found in best.items()}


class WebhookConsumer(Consumer):
    name = "webhooks"
    transactional = True
    linger_s = 0.0

    def __init__(self, *, batch_size: int, on_created: Callable[[], None] | None = None) -> None:
        self.batch_size = batch_size
        self._on_created = on_created
        self._created = 0
        # (entity, entity_id) -> (intent_seq, status) of the last change delivered and
        # committed since start(): the relay delivers each intent's changes in order and
        # every one of them, so that is the predecessor of the entity's next change.
        self._known: dict[tuple[str, str], tuple[int, Any]] = {}
        # The same for the batch being delivered; becomes known only once it committed.
        self._staged: dict[tuple[str, str], tuple[int, Any]] = {}

    async def start(self) -> Position | None:
        # Another relay may have delivered meanwhile: remember nothing from before.
        self._known = {}
        self._staged = {}
        return None

    async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None:
        assert conn is not None
        self._created = 0
        staged: dict[tuple[str, str], tuple[int, Any]] = {}
        self._staged = staged
        relevant = [c for c in changes if c.entity in _ENTITIES]
        if not relevant:
            return
        known = self._known
        # The first change of each entity in the batch: its predecessor is known (memory),
        # absent (an insert), or looked up — all of those in one query.
        unknown: dict[tuple[str, str], Change] = {}
        firsts: set[tuple[str, str]] = set()
        for change in relevant:
            key = (change.entity, change.entity_id)
            if key in firsts:
                continue
            firsts.add(key)
            if change.op != "insert":
                last = known.get(key)
                if last is None or last[0] >= change.intent_seq:
                    unknown[key] = change
        looked_up = await _previous_statuses(conn, unknown) if unknown else {}

        now = now_us()
        events: list[tuple[str, Change, str, bytes]] = []
        for change in relevant:
            key = (change.entity, change.entity_id)
            snapshot = change.snapshot()
            if key in staged:
                previous = staged[key][1]
            elif change.op == "insert":
                previous = None
            elif key in unknown:
                previous = looked_up.get(key)
            else:
                previous = known[key][1]
            staged[key] = (change.intent_seq, snapshot.get("status"))
            found = event_for(change, snapshot, previous)
            if found is None:
                continue
            type_, obj = found
            payload = jsoncodec.dumps({"type": type_, "timestamp": to_rfc3339(change.created_at), "data": obj})
            events.append((new_id("evt"), change, type_, payload))
        if events:
            await self._write(conn, events, now)

    async def _write(self, conn: AsyncConnection, events: Sequence[tuple[str, Change, str, bytes]],
                     now: int) -> None:
        if conn.dialect.name == "postgresql":
            created = await execute(
                conn, _PG["write"], now=now, ids=[e[0] for e in events],
                merchant_ids=[e[1].merchant_id for e in events], types=[e[2] for e in events],
                change_ids=[e[1].id for e in events], intent_ids=[e[1].intent_id for e in events],
                object_ids=[e[1].entity_id for e in events], payloads=[e[3].decode() for e in events])
        else:
            await execute(conn, _SQLITE["events"], now=now, rows=_json([
                (event_id, c.merchant_id, type_, c.id, c.intent_id, c.entity_id, payload.decode())
                for event_id, c, type_, payload in events]))
            created = await execute(conn, _SQLITE["deliveries"], now=now, ids=_json([e[0] for e in events]))
        self._created += created

    def after_commit(self) -> None:
        known, staged = self._known, self._staged
        self._staged = {}
        for key, value in staged.items():
            known.pop(key, None)  # re-inserted last: the dict's order is the age
            known[key] = value
        excess = len(known) - KNOWN_STATUSES_MAX
        if excess > 0:
            for key in list(known)[:excess]:
                del known[key]
        if self._created and self._on_created is not None:
            self._on_created()
        self._created = 0

    async def close(self) -> None:
        return None
