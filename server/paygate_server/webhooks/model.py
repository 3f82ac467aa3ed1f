"""Webhook endpoints and deliveries in the API's terms: event types, secrets, signatures,
wire shapes, and creating an endpoint (its rows: paygate_server.storage.webhook_endpoints)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from paygate_server.clock import now_us, to_rfc3339
from paygate_server.crypto import MasterKey
from paygate_server.errors import ApiError
from paygate_server.ids import new_id
from paygate_server.storage import Transaction
from paygate_server.storage import webhook_endpoints as store

__all__ = ["EVENT_TYPES", "MAX_ENDPOINTS", "new_secret", "sign", "create_endpoint", "open_secret",
           "render_endpoint", "render_delivery"]

EVENT_TYPES = ("payment_intent.created", "payment_intent.in_progress", "payment_intent.requires_capture",
               "payment_intent.succeeded", "payment_intent.failed", "payment_intent.canceled", "refund.succeeded")
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


def render_endpoint(endpoint: store.Endpoint, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"webhookEndpointId": endpoint.id, "url": endpoint.url,
                           "events": list(endpoint.events or EVENT_TYPES),
                           "status": endpoint.status, "createdAt": to_rfc3339(endpoint.created_at)}
    if endpoint.status == "disabled":
        out["disabledReason"] = endpoint.disabled_reason
    if secret is not None:
        out["secret"] = secret
    return out


def render_delivery(d: Mapping[str, Any]) -> dict[str, Any]:
    """A delivery (``DeliveryQueue.recent``'s row) as ``paygate webhooks deliveries`` shows it."""
    return {"eventId": d["event_id"], "webhookEndpointId": d["endpoint_id"], "url": d["url"], "status": d["status"],
            "attempts": d["attempts"], "lastStatusCode": d["last_status_code"], "lastError": d["last_error"],
            "nextAttemptAt": to_rfc3339(d["next_attempt_at"]) if d["status"] == "pending" else None,
            "deliveredAt": to_rfc3339(d["delivered_at"])}


async def create_endpoint(conn: Transaction, master: MasterKey, merchant_id: str, url: str,
                          events: list[str] | None) -> tuple[store.Endpoint, str]:
    """A new endpoint and its secret (in clear: shown once, stored sealed), in the caller's
    unit of work; ``parameter_invalid`` when the merchant has :data:`MAX_ENDPOINTS` already."""
    await store.lock_merchant_endpoints(conn, merchant_id)
    if await store.count_active(conn, merchant_id) >= MAX_ENDPOINTS:
        raise ApiError("parameter_invalid", f"a merchant has at most {MAX_ENDPOINTS} webhook endpoints",
                       param="url")
    endpoint_id = new_id("we")
    secret = new_secret()
    sealed = master.seal(SECRET_PURPOSE, secret.encode(), aad=endpoint_id.encode())
    endpoint = await store.insert_endpoint(conn, endpoint_id=endpoint_id, merchant_id=merchant_id, url=url,
                                           events=events, secret_sealed=sealed, now=now_us())
    return endpoint, secret


def open_secret(master: MasterKey, endpoint_id: str, sealed: bytes) -> str:
    return master.open(SECRET_PURPOSE, sealed, aad=endpoint_id.encode()).decode()
