"""Webhook endpoints' rows: create, count, list (whole, or a page after a cursor), delete.

Each function runs on the caller's connection, so a create commits with whatever else its
unit of work holds (the ``Idempotency-Key`` claim and stored answer of ``POST
/api/v1/webhooks``; the count that enforces the per-merchant limit). The statements are
the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.storage.statements import (
    Connection,
    Sql,
    execute,
    fetch_all,
    fetch_one,
    fetch_value,
)

__all__ = ["Endpoint", "count_active", "insert_endpoint", "list_endpoints", "page_endpoints", "delete_endpoint",
           "lock_merchant_endpoints"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    merchant_id: str
    url: str
    events: tuple[str, ...] | None  # None: every event type
    status: str  # enabled | disabled (deleted ones are never returned)
    disabled_reason: str | None
    created_at: int


_COLUMNS = "id, merchant_id, url, events, status, disabled_reason, created_at"
_COUNT_ACTIVE = Sql("""
    SELECT count(*) AS n FROM webhook_endpoints WHERE merchant_id = :merchant_id AND status <> 'deleted'""")
_INSERT = Sql("""
    INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret_sealed, status, disabled_reason,
                                   created_at, updated_at)
    VALUES (:id, :merchant_id, :url, :events, :secret_sealed, 'enabled', NULL, :now, :now)""")
# The merchant's endpoints that are not deleted, newest first: all of them, a first page,
# or a page after a cursor (an endpoint of the merchant's, deleted or not: deleting the last
# one of a page does not end the listing). A page reads one row more than it holds, to tell
# whether another follows.
_LISTED = f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE merchant_id = :merchant_id AND status <> 'deleted'"
_NEWEST_FIRST = " ORDER BY created_at DESC, id DESC"
_LIST = Sql(_LISTED + _NEWEST_FIRST)
_FIRST_PAGE = Sql(_LISTED + _NEWEST_FIRST + " LIMIT :limit")
_PAGE = Sql(_LISTED + " AND (created_at < :created_at OR (created_at = :created_at AND id < :id))"
            + _NEWEST_FIRST + " LIMIT :limit")
_CURSOR = Sql("SELECT created_at, id FROM webhook_endpoints WHERE id = :id AND merchant_id = :merchant_id")
_MERCHANT_OF = Sql("SELECT merchant_id FROM webhook_endpoints WHERE id = :id")
_DELETE = Sql("""
    UPDATE webhook_endpoints SET status = 'deleted', updated_at = :now
    WHERE id = :id AND merchant_id = :merchant_id AND status <> 'deleted'""")


async def merchant_of_endpoint(conn: Connection, endpoint_id: str) -> str | None:
    """The merchant an endpoint (deleted or not) belongs to; None if there is no such endpoint."""
    merchant_id = await fetch_value(conn, _MERCHANT_OF, id=endpoint_id)
    return None if merchant_id is None else str(merchant_id)


# PostgreSQL advisory locks' first key: "a merchant's endpoint creations" (the relay's are
# 7_342_001, migrations' 7_342_002, endpoint claims' 7_342_003); the second, the merchant
# id's hash (a collision only makes two merchants' creations take turns).
_CREATE_LOCK_CLASS = 7_342_004
_LOCK_MERCHANT_PG = Sql("SELECT pg_advisory_xact_lock(:lock_class, hashtext(:merchant_id))")


async def lock_merchant_endpoints(conn: Connection, merchant_id: str) -> None:
    """Until the caller's transaction ends, no other one gets past this for the merchant:
    the count that enforces the limit and the insert after it are one step. Without it,
    PostgreSQL (read committed) let concurrent creations each count the same endpoints
    and all insert, past the limit; SQLite's write lock serializes them already."""
    if conn.dialect.name == "postgresql":
        await fetch_value(conn, _LOCK_MERCHANT_PG, lock_class=_CREATE_LOCK_CLASS, merchant_id=merchant_id)


async def count_active(conn: Connection, merchant_id: str) -> int:
    """The merchant's endpoints that are not deleted (enabled or disabled)."""
    return int(await fetch_value(conn, _COUNT_ACTIVE, merchant_id=merchant_id))


async def insert_endpoint(conn: Connection, *, endpoint_id: str, merchant_id: str, url: str,
                          events: list[str] | None, secret_sealed: bytes, now: int) -> Endpoint:
    """A new, enabled endpoint; ``events`` None or empty: every event type."""
    await execute(conn, _INSERT, id=endpoint_id, merchant_id=merchant_id, url=url,
                  events=jsoncodec.dumps(events).decode() if events else None,
                  secret_sealed=secret_sealed, now=now)
    return Endpoint(endpoint_id, merchant_id, url, tuple(events) if events else None, "enabled", None, now)


def _endpoint(r: Any) -> Endpoint:
    return Endpoint(r["id"], r["merchant_id"], r["url"], tuple(jsoncodec.loads(r["events"])) if r["events"] else None,
                    r["status"], r["disabled_reason"], r["created_at"])


async def list_endpoints(conn: Connection, merchant_id: str) -> list[Endpoint]:
    """The merchant's endpoints that are not deleted, newest first."""
    return [_endpoint(r) for r in await fetch_all(conn, _LIST, merchant_id=merchant_id)]


async def page_endpoints(conn: Connection, merchant_id: str, *, limit: int,
                         starting_after: str | None) -> tuple[list[Endpoint], bool]:
    """At most ``limit`` of the merchant's endpoints that are not deleted, newest first, after
    the endpoint ``starting_after`` (the last of the previous page), and whether more follow.
    A cursor that names no endpoint of the merchant's is an empty page."""
    if starting_after is None:
        rows = await fetch_all(conn, _FIRST_PAGE, merchant_id=merchant_id, limit=limit + 1)
    else:
        cursor = await fetch_one(conn, _CURSOR, id=starting_after, merchant_id=merchant_id)
        if cursor is None:
            return [], False
        rows = await fetch_all(conn, _PAGE, merchant_id=merchant_id, created_at=cursor["created_at"],
                               id=cursor["id"], limit=limit + 1)
    return [_endpoint(r) for r in rows[:limit]], len(rows) > limit


async def delete_endpoint(conn: Connection, merchant_id: str, endpoint_id: str, now: int) -> bool:
    """True when the merchant had this endpoint (not deleted yet); it gets no more deliveries."""
    return await execute(conn, _DELETE, id=endpoint_id, merchant_id=merchant_id, now=now) == 1
