"""Payment intent operations (SPEC §4): create (cancel is processing's: it may void a hold).

Every state change is one conditional statement in the store, so concurrent requests can
never both win a transition; the request's Idempotency-Key is claimed and answered in the
same transaction (or statement).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.ids import new_id, random_token
from paygate_server.intents.schemas import CreateIntent, render_intent
from paygate_server.storage.port import (
    ExistingKey,
    KeyClaim,
    PaymentStore,
    Row,
)

__all__ = ["Created", "checkout_intent", "create_intent", "hash_client_secret", "new_intent"]


def hash_client_secret(client_secret: str) -> str:
    return hashlib.sha256(client_secret.encode()).hexdigest()


def new_intent(merchant_id: str, data: CreateIntent) -> tuple[dict[str, Any], str]:
    """A new intent's row and its client secret (returned once, stored only as a hash)."""
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
        "capture_method": data.capture_method,
        "amount_capturable": 0,
        "amount_received": 0,
        "cancellation_reason": None,
    }
    return row, client_secret


@dataclass(frozen=True, slots=True)
class Created:
    answer: bytes  # the create's answer: the only one that carries the client secret


async def create_intent(store: PaymentStore, merchant_id: str, data: CreateIntent,
                        claim: KeyClaim | None) -> Created | ExistingKey:
    row, client_secret = new_intent(merchant_id, data)
    answer = jsoncodec.dumps(render_intent(row, client_secret=client_secret))
    existing = await store.create_intent(row, claim, answer)
    return Created(answer) if existing is None else existing


async def checkout_intent(store: PaymentStore, client_secret: str) -> tuple[Row, int] | None:
    """The intent a clientSecret names and its checkout's tokenizations so far, or None."""
    return await store.checkout_intent(hash_client_secret(client_secret))
