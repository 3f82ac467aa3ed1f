"""Webhook endpoints, their secrets, events and deliveries (SQLAlchemy Core)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server import jsoncodec
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.crypto import MasterKey
from paygate_server.ids import new_id
from paygate_server.storage.schema_history import webhook_deliveries, webhook_endpoints

__all__ = [
    "EVENT_TYPES",
    "MAX_ENDPOINTS",
    "new_secret",
    "sign",
    "insert_endpoint",
    "list_endpoints",
    "delete_endpoint",
    "open_secret",
    "render_endpoint",
    "replay_failed",
    "list_deliveries",
]

EVENT_TYPES = (
    "payment_intent.created",
    "payment_intent.in_progress",
    "payment_intent.succeeded",
    "payment_intent.failed",
    "payment_intent.canceled",
    "refund.succeeded",
)
MAX_ENDPOINTS = 16
SECRET_PURPOSE = "webhook-endpoint-secret"
SECRET_BYTES = 32


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (Standard Webhooks: 24–64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def render_endpoint(row: Mapping[str, Any], secret: str | None = None) -> dict[str, Any]:
    events = jsoncodec.loads(row["events"]) if row["events"] else list(EVENT_TYPES)
    out: dict[str, Any] = {"webhookEndpointId": row["id"], "url": row["url"], "events": events,
                           "status": row["status"], "createdAt": to_rfc3339(row["created_at"])}
    if row["status"] == "disabled":
        out["disabledReason"] = row["disabled_reason"]
    if secret is not None:
        out["secret"] = secret
    return out


async def count_active(conn: AsyncConnection, merchant_id: str) -> int:
    return (await conn.execute(select(func.count()).select_from(webhook_endpoints).where(
        webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.status != "deleted"))).scalar_one()


async def insert_endpoint(conn: AsyncConnection, master: MasterKey, merchant_id: str, url: str,
                          events: list[str] | None) -> tuple[dict[str, Any], str]:
    endpoint_id = new_id("we")
    secret = new_secret()
    now = now_us()
    row = {"id": endpoint_id, "merchant_id": merchant_id, "url": url,
           "events": jsoncodec.dumps(events).decode() if events else None,
           "secret_sealed": master.seal(SECRET_PURPOSE, secret.encode(), aad=endpoint_id.encode()),
           "status": "enabled", "disabled_reason": None, "created_at": now, "updated_at": now}
    await conn.execute(insert(webhook_endpoints).values(**row))
    return row, secret


def open_secret(master: MasterKey, row: Mapping[str, Any]) -> str:
    return master.open(SECRET_PURPOSE, bytes(row["secret_sealed"]), aad=str(row["id"]).encode()).decode()


async def list_endpoints(conn: AsyncConnection, merchant_id: str) -> list[Mapping[str, Any]]:
    rows = await conn.execute(select(webhook_endpoints).where(
        webhook_endpoints.c.merchant_id == merchant_id, webhook_endpoints.c.status != "deleted")
        .order_by(webhook_endpoints.c.created_at.desc(), webhook_endpoints.c.id.desc()))
    return [r._mapping for r in rows]  # type: ignore[misc]  # RowMapping is keyed str | Column


async def delete_endpoint(conn: AsyncConnection, merchant_id: str, endpoint_id: str) -> bool:
    result = await conn.execute(update(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.merchant_id == merchant_id,
        webhook_endpoints.c.status != "deleted").values(status="deleted", updated_at=now_us()))
    return result.rowcount == 1


async def replay_failed(conn: AsyncConnection, *, merchant_id: str | None = None, endpoint_id: str | None = None,
                        event_id: str | None = None) -> int:
    """Failed deliveries matching the filters go back to ``pending``, due now, with a fresh
    retry schedule; their disabled endpoints are enabled again (the operator asked)."""
    where = [webhook_deliveries.c.status == "failed"]
    if merchant_id:
        where.append(webhook_deliveries.c.merchant_id == merchant_id)
    if endpoint_id:
        where.append(webhook_deliveries.c.endpoint_id == endpoint_id)
    if event_id:
        where.append(webhook_deliveries.c.event_id == event_id)
    endpoint_ids = [r[0] for r in await conn.execute(
        select(webhook_deliveries.c.endpoint_id).where(and_(*where)).distinct())]
    now = now_us()
    if endpoint_ids:
        await conn.execute(update(webhook_endpoints).where(
            webhook_endpoints.c.id.in_(endpoint_ids), webhook_endpoints.c.status == "disabled")
            .values(status="enabled", disabled_reason=None, updated_at=now))
    result = await conn.execute(update(webhook_deliveries).where(and_(*where)).values(
        status="pending", attempts=0, next_attempt_at=now, last_error=None, updated_at=now))
    return result.rowcount


async def list_deliveries(conn: AsyncConnection, *, status: str | None = None, merchant_id: str | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
    query = select(webhook_deliveries, webhook_endpoints.c.url).join(
        webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)
    if status:
        query = query.where(webhook_deliveries.c.status == status)
    if merchant_id:
        query = query.where(webhook_deliveries.c.merchant_id == merchant_id)
    rows = await conn.execute(query.order_by(webhook_deliveries.c.updated_at.desc()).limit(limit))
    return [{"eventId": r.event_id, "webhookEndpointId": r.endpoint_id, "url": r.url, "status": r.status,
             "attempts": r.attempts, "lastStatusCode": r.last_status_code, "lastError": r.last_error,
             "nextAttemptAt": to_rfc3339(r.next_attempt_at) if r.status == "pending" else None,
             "deliveredAt": to_rfc3339(r.delivered_at)} for r in rows]
