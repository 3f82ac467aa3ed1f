"""Webhook events and their deliveries, written in the relay's transaction.

The webhook consumer (webhooks/events.py) runs inside the transaction that records its
relay offset, on that transaction's connection: what is written here commits with the
offset or not at all. Whatever the number of events, one fixed statement per step:
PostgreSQL takes arrays (``unnest``), SQLite a JSON array of rows (``json_each``). An event
whose change has one already is skipped (a re-delivered batch), and so are its deliveries:
only the events just inserted get one delivery per endpoint of the merchant subscribed to
the type: ``pending`` for an enabled endpoint; ``failed`` at once, ``endpoint disabled``
and never attempted, for one disabled (a ``410``) within ``kept_for_disabled_us`` — the
webhook retention (``PAYGATE_WEBHOOK_RETENTION_S``, webhooks/retention.py), so that ``paygate webhooks replay`` sends them once the merchant has mended their
receiver, as Stripe resends a disabled endpoint's events. An endpoint disabled longer gets
no rows: one disabled for ever does not grow the table for ever. A disabled endpoint's
``updated_at`` is when it was disabled (nothing else updates a disabled endpoint's row).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.storage.statements import Connection, Sql, execute, fetch_all, fetch_value

__all__ = ["NewEvent", "DISABLED_ERROR", "entity_statuses", "insert_events",
           "last_event_types"]

DISABLED_ERROR = "endpoint disabled"  # the dispatcher's word for a pending one it finds disabled


@dataclass(frozen=True, slots=True)
class NewEvent:
    id: str
    merchant_id: str
    type: str
    change_id: int
    intent_id: str
    object_id: str
    payload: str  # the exact body every attempt sends


# Each statement in its two spellings, side by side.
_PG = {
    "statuses": Sql("""
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
                                        created_at, updated_at, last_error)
        SELECT ev.id, ep.id, ev.merchant_id, CASE WHEN ep.status = 'enabled' THEN 'pending' ELSE 'failed' END,
               0, :now::bigint, :now::bigint, :now::bigint,
               CASE WHEN ep.status = 'enabled' THEN NULL ELSE CAST(:disabled_error AS text) END
        FROM ev JOIN webhook_endpoints ep ON ep.merchant_id = ev.merchant_id
          AND (ep.status = 'enabled' OR (ep.status = 'disabled' AND ep.updated_at >= :disabled_since::bigint))
        WHERE ep.events IS NULL OR ep.events::jsonb ? ev.type"""),
    "last_events": Sql("""
        SELECT DISTINCT ON (object_id) object_id, type FROM webhook_events
        WHERE object_id = ANY(:object_ids::text[]) ORDER BY object_id, change_id DESC"""),
}
_SQLITE = {
    "statuses": Sql("""
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
                                        created_at, updated_at, last_error)
        SELECT ev.id, ep.id, ev.merchant_id, CASE WHEN ep.status = 'enabled' THEN 'pending' ELSE 'failed' END,
               0, :now, :now, :now, CASE WHEN ep.status = 'enabled' THEN NULL ELSE :disabled_error END
        FROM webhook_events ev
        JOIN webhook_endpoints ep ON ep.merchant_id = ev.merchant_id
          AND (ep.status = 'enabled' OR (ep.status = 'disabled' AND ep.updated_at >= :disabled_since))
        WHERE ev.id IN (SELECT value FROM json_each(:ids))
          AND (ep.events IS NULL OR ev.type IN (SELECT value FROM json_each(ep.events)))"""),
    "last_events": Sql("""
        SELECT w.object_id, w.type FROM webhook_events w
        WHERE w.object_id IN (SELECT value FROM json_each(:object_ids))
          AND w.change_id = (SELECT max(change_id) FROM webhook_events WHERE object_id = w.object_id)"""),
}


_MERCHANT_OF = Sql("SELECT merchant_id FROM webhook_events WHERE id = :id")


async def merchant_of_event(conn: Connection, event_id: str) -> str | None:
    """The merchant an event belongs to; None if there is no such event."""
    merchant_id = await fetch_value(conn, _MERCHANT_OF, id=event_id)
    return None if merchant_id is None else str(merchant_id)


def _json(value: Any) -> str:
    return jsoncodec.dumps(value).decode()


async def entity_statuses(conn: Connection, intent_ids: Sequence[str]) -> list[tuple[str, str, int, Any]]:
    """The status at every change of the intents' payment intents and refunds, in one query:
    ``(entity, entity_id, intent_seq, status)``."""
    if conn.dialect.name == "postgresql":
        rows = await fetch_all(conn, _PG["statuses"], intent_ids=list(intent_ids))
    else:
        rows = await fetch_all(conn, _SQLITE["statuses"], intent_ids=_json(list(intent_ids)))
    return [(r["entity"], r["entity_id"], r["intent_seq"], r["status"]) for r in rows]


async def last_event_types(conn: Connection, object_ids: Sequence[str]) -> dict[str, str]:
    """The type of each object's latest event (objects without one are absent)."""
    if conn.dialect.name == "postgresql":
        rows = await fetch_all(conn, _PG["last_events"], object_ids=list(object_ids))
    else:
        rows = await fetch_all(conn, _SQLITE["last_events"], object_ids=_json(list(object_ids)))
    return {r["object_id"]: r["type"] for r in rows}


async def insert_events(conn: Connection, events: Sequence[NewEvent], now: int, *, kept_for_disabled_us: int) -> int:
    """Insert the events whose change has none yet, and their deliveries; the number of
    deliveries created (those failed at once, to an endpoint disabled less than
    ``kept_for_disabled_us`` ago, included)."""
    disabled = {"disabled_error": DISABLED_ERROR, "disabled_since": now - kept_for_disabled_us}
    if conn.dialect.name == "postgresql":
        return await execute(
            conn, _PG["write"], now=now, **disabled, ids=[e.id for e in events],
            merchant_ids=[e.merchant_id for e in events],
            types=[e.type for e in events], change_ids=[e.change_id for e in events],
            intent_ids=[e.intent_id for e in events], object_ids=[e.object_id for e in events],
            payloads=[e.payload for e in events])
    await execute(conn, _SQLITE["events"], now=now, rows=_json([
        (e.id, e.merchant_id, e.type, e.change_id, e.intent_id, e.object_id, e.payload) for e in events]))
    return await execute(conn, _SQLITE["deliveries"], now=now, **disabled, ids=_json([e.id for e in events]))
