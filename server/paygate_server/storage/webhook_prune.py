"""Webhook retention: finished deliveries and old events leave the database in bounded batches
(docs/operations.md "Webhooks": the decision).

A delivery goes once it is ``delivered`` or ``failed``, holds no lease, and both its last
update and its last attempt's lease end (``next_attempt_at``) are before ``before``: found
through ``ix_webhook_deliveries_due`` (status, ``next_attempt_at``), the dispatcher's own
index. A ``pending`` delivery — being retried, or replayed — is never taken, whatever its age.

An event goes once it was created before ``before``, has no delivery left and is not its
object's latest event: the webhook consumer reads an object's latest event for its status
once pruning took the object's changes from the change log (webhooks/events.py), and
without it would announce a refund on an old payment as the payment's ``succeeded`` again,
under a new ``webhook-id``. So one event per payment intent and refund stays (without
deliveries); every other row of both tables goes.

Events are looked at by change id — the order the relay made them in, so oldest first —
from ``webhook_prune.events_after``, the scan's position, shared by every pruner and
moved forward only: a scan stops at the first event not old enough. An event the scan kept
(a delivery left, or the latest of its object) is looked at again through its object
whenever a delivery of the object's events goes or a later event of the object is scanned.

Each batch is one short transaction: at most ``batch`` deliveries of each status and events
of at most ``batch`` scanned ones. On PostgreSQL the rows are locked ``SKIP LOCKED`` before
they are deleted: two pruners at once take different rows (they wait for each other only
on the scan's position, written last, just before each commits), and a row a replay is changing (its lock) is left to the next pass; the conditions are
checked again on the row as locked, so a delivery replayed (``pending`` again) meanwhile is
kept. SQLite has one writer at a time.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paygate_server import jsoncodec
from paygate_server.storage.engine import Database
from paygate_server.storage.statements import Connection, Sql, execute, fetch_all

__all__ = ["PruneBatch", "prune_batch", "count_prunable"]

_FINISHED = ("delivered", "failed")

_OLD_DELIVERY = ("status = :status AND next_attempt_at < :before AND updated_at < :before"
                 " AND lease_until IS NULL")
_OLD_EVENT = ("o.created_at < :before"
              " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = o.id)"
              " AND EXISTS (SELECT 1 FROM webhook_events l WHERE l.object_id = o.object_id"
              " AND l.change_id > o.change_id)")

_PG = {
    "deliveries": Sql(f"""
        DELETE FROM webhook_deliveries w USING (
          SELECT event_id, endpoint_id FROM webhook_deliveries WHERE {_OLD_DELIVERY}
          LIMIT :limit FOR UPDATE SKIP LOCKED) AS old
        WHERE w.event_id = old.event_id AND w.endpoint_id = old.endpoint_id
        RETURNING (SELECT object_id FROM webhook_events e WHERE e.id = w.event_id) AS object_id"""),
    "events": Sql(f"""
        DELETE FROM webhook_events w USING (
          SELECT o.id FROM webhook_events o WHERE o.object_id = ANY(:objects::text[]) AND {_OLD_EVENT}
          FOR UPDATE OF o SKIP LOCKED) AS old
        WHERE w.id = old.id"""),
}
_SQLITE = {
    "deliveries": Sql(f"""
        DELETE FROM webhook_deliveries WHERE rowid IN (
          SELECT rowid FROM webhook_deliveries WHERE {_OLD_DELIVERY} LIMIT :limit)
        RETURNING (SELECT object_id FROM webhook_events e WHERE e.id = event_id) AS object_id"""),
    "events": Sql(f"""
        DELETE FROM webhook_events WHERE id IN (
          SELECT o.id FROM webhook_events o
          WHERE o.object_id IN (SELECT value FROM json_each(:objects)) AND {_OLD_EVENT})"""),
}
_SCAN = Sql("SELECT change_id, object_id, created_at FROM webhook_events WHERE change_id > :after"
            " ORDER BY change_id LIMIT :limit")
_POSITION = Sql("SELECT events_after FROM webhook_prune WHERE id = 1")
_MOVE = Sql("UPDATE webhook_prune SET events_after = :after, updated_at = :now"
            " WHERE id = 1 AND events_after < :after")

_COUNT_DELIVERIES = Sql(f"SELECT count(*) AS n FROM webhook_deliveries WHERE {_OLD_DELIVERY}")
_COUNT_EVENTS = Sql(f"SELECT count(*) AS n FROM webhook_events o WHERE {_OLD_EVENT}")


@dataclass(frozen=True, slots=True)
class PruneBatch:
    deliveries: int  # deleted
    events: int  # deleted
    more: bool  # a batch was full, or the scan has not reached the events too young yet


async def _delete_deliveries(conn: Connection, before: int, limit: int) -> tuple[int, set[str], bool]:
    objects: set[str] = set()
    deleted, full = 0, False
    statement = (_PG if conn.dialect.name == "postgresql" else _SQLITE)["deliveries"]
    for status in _FINISHED:
        rows = await fetch_all(conn, statement, status=status, before=before, limit=limit)
        deleted += len(rows)
        full = full or len(rows) == limit
        objects.update(r["object_id"] for r in rows if r["object_id"] is not None)
    return deleted, objects, full


async def _delete_events(conn: Connection, objects: Sequence[str], before: int) -> int:
    if not objects:
        return 0
    if conn.dialect.name == "postgresql":
        return await execute(conn, _PG["events"], objects=list(objects), before=before)
    return await execute(conn, _SQLITE["events"], objects=jsoncodec.dumps(list(objects)).decode(), before=before)


async def prune_batch(db: Database, before: int, *, batch: int, now: int) -> PruneBatch:
    """One batch, one transaction: old finished deliveries, then the old events of the
    objects they belonged to and of the next ``batch`` events the scan reaches."""
    async with db.write() as conn:
        deliveries, objects, full = await _delete_deliveries(conn, before, batch)
        after = int((await fetch_all(conn, _POSITION))[0]["events_after"])
        scanned = await fetch_all(conn, _SCAN, after=after, limit=batch)
        reached = after
        for row in scanned:
            if row["created_at"] >= before:  # the events the relay made later are younger
                break
            objects.add(row["object_id"])
            reached = row["change_id"]
        events = await _delete_events(conn, sorted(objects), before)
        if reached > after:
            await execute(conn, _MOVE, after=reached, now=now)
    scan_more = len(scanned) == batch and reached == scanned[-1]["change_id"]
    return PruneBatch(deliveries, events, full or scan_more)


async def count_prunable(db: Database, before: int) -> tuple[int, int]:
    """(deliveries, events) a prune at ``before`` would delete as the rows stand: a dry run's
    answer, counted in full. The events are those without a delivery already: an old event
    whose last deliveries the prune deletes goes too, and is not counted."""
    async with db.read() as conn:
        deliveries = sum([int((await fetch_all(conn, _COUNT_DELIVERIES, status=s, before=before))[0]["n"])
                          for s in _FINISHED])
        events = int((await fetch_all(conn, _COUNT_EVENTS, before=before))[0]["n"])
    return deliveries, events
