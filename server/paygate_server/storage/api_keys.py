"""API keys' rows: the key, its merchant, its signing secret as sealed bytes, revocation.

Sealing and opening the secret is the merchants domain's business (paygate_server.merchants):
only ciphertext crosses this module. The statements are the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.storage.schema import api_keys

__all__ = ["KeyListing", "find_api_key", "insert_api_key", "list_api_keys", "revoke_api_key"]


async def insert_api_key(conn: AsyncConnection, api_key: str, merchant_id: str, secret_sealed: bytes) -> None:
    await conn.execute(insert(api_keys).values(api_key=api_key, merchant_id=merchant_id,
                                               secret_sealed=secret_sealed, created_at=now_us()))


async def revoke_api_key(conn: AsyncConnection, merchant_id: str, api_key: str) -> bool:
    """Revoke the merchant's key; False if it has no such key, or it was already revoked."""
    result = await conn.execute(update(api_keys).where(
        api_keys.c.api_key == api_key, api_keys.c.merchant_id == merchant_id, api_keys.c.revoked_at.is_(None),
    ).values(revoked_at=now_us()))
    return result.rowcount == 1


async def find_api_key(conn: AsyncConnection, api_key: str) -> tuple[str, bytes, bool] | None:
    """The key's ``(merchant_id, secret_sealed, revoked)``, or None."""
    row = (await conn.execute(select(api_keys.c.merchant_id, api_keys.c.secret_sealed, api_keys.c.revoked_at)
                              .where(api_keys.c.api_key == api_key))).first()
    if row is None:
        return None
    return row.merchant_id, bytes(row.secret_sealed), row.revoked_at is not None


class KeyListing(NamedTuple):
    """A key as an operator may see it: never its secret, sealed or not."""
    api_key: str
    created_at: int
    revoked_at: int | None


async def list_api_keys(conn: AsyncConnection, merchant_id: str) -> list[KeyListing]:
    """The merchant's keys, active and revoked, newest first."""
    rows = await conn.execute(select(api_keys.c.api_key, api_keys.c.created_at, api_keys.c.revoked_at)
                              .where(api_keys.c.merchant_id == merchant_id)
                              .order_by(api_keys.c.created_at.desc(), api_keys.c.api_key))
    return [KeyListing(r.api_key, r.created_at, r.revoked_at) for r in rows]
