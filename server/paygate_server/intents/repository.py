"""Payment intent storage. Every state change is one conditional statement, so concurrent
requests can never both win a transition.

What every payment runs (insert, read, the processing transitions) is hand-written SQL on
the driver (:mod:`paygate_server.storage.statements`); the rest is SQLAlchemy Core."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.cdc.changes import Change
from paygate_server.clock import now_us
from paygate_server.ids import new_id, random_token
from paygate_server.intents.schemas import CreateIntent
from paygate_server.storage.schema import change_log
from paygate_server.storage.schema import payment_intents as intents
from paygate_server.storage.statements import Connection, Sql, execute, fetch_one

__all__ = [
    "COLUMNS",
    "INSERT_INTENT",
    "START_PROCESSING",
    "SETTLE_PROCESSING",
    "new_intent",
    "insert_intent",
    "get_intent",
    "get_intent_by_client_secret",
    "list_intents",
    "transition",
    "start_processing",
    "settle_processing",
    "history",
    "hash_client_secret",
]


# Every column, in table order: the SELECT and RETURNING list of every statement here.
COLUMNS = ", ".join(c.name for c in intents.c)
INSERT_INTENT = Sql(f"INSERT INTO payment_intents ({COLUMNS}) VALUES ({', '.join(':' + c.name for c in intents.c)})")
_BY_ID = "id = :intent_id AND merchant_id = :merchant_id"
_GET = Sql(f"SELECT {COLUMNS} FROM payment_intents WHERE {_BY_ID}")
# The processing transitions as text, so processing/attempts.py can put them in larger
# statements: ``UPDATE payment_intents {…} RETURNING {COLUMNS}``.
START_PROCESSING = (
    "SET status = 'in_progress', card = :card, last_error = NULL, version = version + 1, updated_at = :now"
    f" WHERE {_BY_ID} AND status IN ('created', 'failed') AND failed_attempts < :max_failed"
)
SETTLE_PROCESSING = (
    "SET status = :status, last_error = :last_error, failed_attempts = failed_attempts + :failed,"
    f" version = version + 1, updated_at = :now WHERE {_BY_ID} AND status = 'in_progress'"
)
_START_PROCESSING = Sql(f"UPDATE payment_intents {START_PROCESSING} RETURNING {COLUMNS}")
_SETTLE_PROCESSING = Sql(f"UPDATE payment_intents {SETTLE_PROCESSING} RETURNING {COLUMNS}")


def hash_client_secret(client_secret: str) -> str:
    return hashlib.sha256(client_secret.encode()).hexdigest()


def new_intent(merchant_id: str, data: CreateIntent) -> tuple[dict[str, Any], str]:
    """A new intent's row (to insert with :data:`INSERT_INTENT`) and its client secret."""
    intent_id = new_id("pi")
    client_secret = f"{intent_id}_secret_{random_token(24)}"
    now = now_us()
    row = {
        "id": intent_id,
        "merchant_id": merchant_id,
        "status": "created",
        "amount": data.amount,
        "currency": data.currency,
        "amount_refunded": 0,
        "product_details": jsoncodec.dumps(data.product_details).decode(),
        "description": data.description,
        "metadata": jsoncodec.dumps(data.metadata).decode() if data.metadata else None,
        "client_secret_hash": hash_client_secret(client_secret),
        "last_error": None,
        "card": None,
        "version": 1,
        "failed_attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    return row, client_secret


async def insert_intent(conn: Connection, merchant_id: str, data: CreateIntent) -> tuple[dict[str, Any], str]:
    row, client_secret = new_intent(merchant_id, data)
    await execute(conn, INSERT_INTENT, **row)
    return row, client_secret


async def get_intent(conn: Connection, merchant_id: str, intent_id: str) -> Mapping[str, Any] | None:
    return await fetch_one(conn, _GET, intent_id=intent_id, merchant_id=merchant_id)


async def start_processing(conn: AsyncConnection, merchant_id: str, intent_id: str, *, card: str,
                           max_failed_attempts: int) -> Mapping[str, Any] | None:
    """``created``/``failed`` → ``in_progress`` with the card's summary; the new row or None."""
    return await fetch_one(conn, _START_PROCESSING, intent_id=intent_id, merchant_id=merchant_id,
                           card=card, max_failed=max_failed_attempts, now=now_us())


async def settle_processing(conn: AsyncConnection, merchant_id: str, intent_id: str, *, status: str,
                            last_error: str | None) -> Mapping[str, Any] | None:
    """``in_progress`` → ``succeeded``/``failed`` (counting a failure); the new row or None."""
    return await fetch_one(conn, _SETTLE_PROCESSING, intent_id=intent_id, merchant_id=merchant_id,
                           status=status, last_error=last_error, failed=int(status == "failed"),
                           now=now_us())


async def get_intent_by_client_secret(conn: AsyncConnection, client_secret: str) -> Mapping[str, Any] | None:
    row = (await conn.execute(
        select(intents).where(intents.c.client_secret_hash == hash_client_secret(client_secret))
    )).first()
    return row._mapping if row else None  # type: ignore[return-value]  # RowMapping is keyed str | Column


async def list_intents(
    conn: AsyncConnection, merchant_id: str, *, limit: int, starting_after: str | None, status: str | None
) -> tuple[list[Mapping[str, Any]], bool]:
    """Newest first; a cursor is the last id of the previous page."""
    query = select(intents).where(intents.c.merchant_id == merchant_id)
    if status is not None:
        query = query.where(intents.c.status == status)
    if starting_after is not None:
        cursor = (await conn.execute(
            select(intents.c.created_at, intents.c.id)
            .where(intents.c.id == starting_after, intents.c.merchant_id == merchant_id)
        )).first()
        if cursor is None:
            return [], False
        query = query.where(
            or_(intents.c.created_at < cursor.created_at,
                and_(intents.c.created_at == cursor.created_at, intents.c.id < cursor.id))
        )
    query = query.order_by(intents.c.created_at.desc(), intents.c.id.desc()).limit(limit + 1)
    rows = [r._mapping for r in await conn.execute(query)]
    return rows[:limit], len(rows) > limit  # type: ignore[return-value]  # RowMapping is keyed str | Column


async def transition(
    conn: AsyncConnection,
    merchant_id: str,
    intent_id: str,
    *,
    from_statuses: tuple[str, ...],
    values: dict[str, Any],
    extra_where: tuple[Any, ...] = (),
) -> Mapping[str, Any] | None:
    """Apply ``values`` only if the intent is in one of ``from_statuses``; the new row or None."""
    stmt = (
        update(intents)
        .where(intents.c.id == intent_id, intents.c.merchant_id == merchant_id,
               intents.c.status.in_(from_statuses), *extra_where)
        .values(**values, version=intents.c.version + 1, updated_at=now_us())
        .returning(*intents.c)
    )
    row = (await conn.execute(stmt)).first()
    return row._mapping if row else None  # type: ignore[return-value]  # RowMapping is keyed str | Column


async def history(conn: AsyncConnection, merchant_id: str, intent_id: str) -> list[Change]:
    """The intent's changes, oldest first (none: no such intent for this merchant)."""
    rows = await conn.execute(
        select(change_log)
        .where(change_log.c.intent_id == intent_id, change_log.c.merchant_id == merchant_id)
        .order_by(change_log.c.intent_seq)
    )
    return [Change.from_row(r) for r in rows]

