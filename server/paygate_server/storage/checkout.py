"""What the hosted checkout reads and writes: the intent a clientSecret names, its
tokenization count (``checkout_limits``, the card-testing limit), and whether the merchant
is live.

The checkout runs these once or twice per payment, so they are SQL text
(:mod:`.statements`), each written once: the conditional upsert is spelled the same on
SQLite (3.35+) and PostgreSQL.
"""
from __future__ import annotations

from dataclasses import dataclass

from paygate_server.storage.engine import Database
from paygate_server.storage.statements import Connection, Sql, fetch_one, fetch_value

__all__ = ["CheckoutIntent", "count_tokenization", "intent_for_checkout", "merchant_is_live", "tokenizations"]


@dataclass(frozen=True, slots=True)
class CheckoutIntent:
    """The intent behind a clientSecret, as the checkout needs it."""

    id: str
    merchant_id: str
    status: str
    amount: int  # minor units of ``currency``
    currency: str
    description: str | None
    failed_attempts: int
    tokenizations: int  # cards tokenized for it so far, successful or not


_INTENT = Sql(
    "SELECT i.id, i.merchant_id, i.status, i.amount, i.currency, i.description, i.failed_attempts,"
    " l.tokenizations FROM payment_intents i LEFT JOIN checkout_limits l ON l.intent_id = i.id"
    " WHERE i.client_secret_hash = :client_secret_hash"
)
_TOKENIZATIONS = Sql("SELECT tokenizations FROM checkout_limits WHERE intent_id = :intent_id")
# Conditional, so concurrent requests can never push the count past the limit: at the limit
# the update does nothing and returns no row.
_COUNT = Sql(
    "INSERT INTO checkout_limits (intent_id, tokenizations, updated_at) VALUES (:intent_id, 1, :now)"
    " ON CONFLICT (intent_id) DO UPDATE SET tokenizations = checkout_limits.tokenizations + 1,"
    " updated_at = excluded.updated_at WHERE checkout_limits.tokenizations < :limit"
    " RETURNING tokenizations"
)
# api_keys.api_key holds the publishable key: a live pair makes the checkout a live one.
_LIVE_KEY = Sql(
    "SELECT 1 FROM api_keys WHERE merchant_id = :merchant_id AND revoked_at IS NULL"
    " AND api_key LIKE 'pk\\_live\\_%' ESCAPE '\\' LIMIT 1"
)


async def intent_for_checkout(conn: Connection, client_secret_hash: str) -> CheckoutIntent | None:
    """The intent whose clientSecret hashes to ``client_secret_hash``, with its
    tokenizations, in one query; None if there is none."""
    row = await fetch_one(conn, _INTENT, client_secret_hash=client_secret_hash)
    if row is None:
        return None
    return CheckoutIntent(row["id"], row["merchant_id"], row["status"], int(row["amount"]), row["currency"],
                          row["description"], int(row["failed_attempts"]), int(row["tokenizations"] or 0))


async def tokenizations(db: Database, intent_id: str) -> int:
    async with db.read_one() as conn:
        return int(await fetch_value(conn, _TOKENIZATIONS, intent_id=intent_id) or 0)


async def count_tokenization(conn: Connection, intent_id: str, *, limit: int, now: int) -> bool:
    """Count one tokenization unless ``limit`` is reached; False when refused."""
    return await fetch_one(conn, _COUNT, intent_id=intent_id, now=now, limit=limit) is not None


async def merchant_is_live(conn: Connection, merchant_id: str) -> bool:
    """Whether the merchant has an unrevoked live key pair (else its checkout is in test mode)."""
    return await fetch_one(conn, _LIVE_KEY, merchant_id=merchant_id) is not None
