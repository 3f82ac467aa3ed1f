"""What the hosted checkout reads and writes besides the intent (the payment store's): its
tokenization count (``checkout_limits``, the card-testing limit), and whether the merchant
is live.

The checkout runs these once or twice per payment, so they are SQL text
(:mod:`.statements`), each written once: the conditional upsert is spelled the same on
SQLite (3.35+) and PostgreSQL.
"""
from __future__ import annotations

from paygate_server.storage.engine import Database
from paygate_server.storage.statements import Connection, Sql, fetch_one, fetch_value

__all__ = ["COUNT_TOKENIZATION", "count_tokenization", "merchant_is_live", "tokenizations"]

_TOKENIZATIONS = Sql("SELECT tokenizations FROM checkout_limits WHERE intent_id = :intent_id")
# Conditional, so concurrent requests can never push the count past the limit: at the limit
# the update does nothing and returns no row.
# (Its text is also the first half of the vault's one-statement store on PostgreSQL,
# storage/vault.py.)
COUNT_TOKENIZATION = (
    "INSERT INTO checkout_limits (intent_id, tokenizations, updated_at) VALUES (:intent_id, 1, :now)"
    " ON CONFLICT (intent_id) DO UPDATE SET tokenizations = checkout_limits.tokenizations + 1,"
    " updated_at = excluded.updated_at WHERE checkout_limits.tokenizations < :limit"
    " RETURNING tokenizations"
)
_COUNT = Sql(COUNT_TOKENIZATION)
# api_keys.api_key holds the publishable key: a live pair makes the checkout a live one.
_LIVE_KEY = Sql(
    "SELECT 1 FROM api_keys WHERE merchant_id = :merchant_id AND revoked_at IS NULL"
    " AND api_key LIKE 'pk\\_live\\_%' ESCAPE '\\' LIMIT 1"
)


async def tokenizations(db: Database, intent_id: str) -> int:
    async with db.read_one() as conn:
        return int(await fetch_value(conn, _TOKENIZATIONS, intent_id=intent_id) or 0)


async def count_tokenization(conn: Connection, intent_id: str, *, limit: int, now: int) -> bool:
    """Count one tokenization unless ``limit`` is reached; False when refused."""
    return await fetch_one(conn, _COUNT, intent_id=intent_id, now=now, limit=limit) is not None


async def merchant_is_live(conn: Connection, merchant_id: str) -> bool:
    """Whether the merchant has an unrevoked live key pair (else its checkout is in test mode)."""
    return await fetch_one(conn, _LIVE_KEY, merchant_id=merchant_id) is not None
