"""Merchants and their allowed checkout origins: the rows, on the caller's unit of work.

Each function runs on the connection of a :meth:`Database.write` / :meth:`Database.read`
the caller opened, so a merchant, its origins and its first key commit together. The
statements are the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.storage.schema import merchant_origins, merchants

__all__ = ["add_origins", "get_merchant", "insert_merchant", "list_merchants", "list_origins"]


async def insert_merchant(conn: AsyncConnection, merchant_id: str, name: str, origins: Iterable[str]) -> None:
    """A new merchant with its allowed origins (already normalized)."""
    await conn.execute(insert(merchants).values(id=merchant_id, name=name, created_at=now_us()))
    await add_origins(conn, merchant_id, origins)


async def add_origins(conn: AsyncConnection, merchant_id: str, origins: Iterable[str]) -> None:
    """Allow more origins (normalized, none of them allowed yet) for the merchant."""
    rows = [{"merchant_id": merchant_id, "origin": origin} for origin in origins]
    if rows:
        await conn.execute(insert(merchant_origins), rows)


async def get_merchant(conn: AsyncConnection, merchant_id: str) -> dict[str, object] | None:
    """The merchant's row (``id``, ``name``, ``created_at``), or None."""
    row = (await conn.execute(select(merchants).where(merchants.c.id == merchant_id))).first()
    return dict(row._mapping) if row else None


async def list_origins(conn: AsyncConnection, merchant_id: str) -> list[str]:
    """The merchant's allowed origins, sorted."""
    rows = await conn.execute(select(merchant_origins.c.origin).where(merchant_origins.c.merchant_id == merchant_id))
    return sorted(r[0] for r in rows)


async def list_merchants(conn: AsyncConnection, *, limit: int,
                         before: tuple[int, str] | None = None) -> list[dict[str, object]]:
    """``limit`` merchants' rows (``id``, ``name``, ``created_at``), newest first (then by id,
    descending, so merchants made in the same microsecond keep one order), after the keyset
    ``before`` — the ``(created_at, id)`` of the previous page's last row — if given.
    Keyset, not ``OFFSET``: a merchant created while someone pages neither repeats nor
    pushes one out of sight."""
    query = select(merchants).order_by(merchants.c.created_at.desc(), merchants.c.id.desc()).limit(limit)
    if before is not None:
        # A row value, as in the payments search (storage/console_search.py).
        query = query.where(tuple_(merchants.c.created_at, merchants.c.id)
                            < tuple_(literal(before[0]), literal(before[1])))
    rows = await conn.execute(query)
    return [dict(row._mapping) for row in rows]
