"""The few statements whose spelling differs between SQLite and PostgreSQL."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["insert_ignore", "upsert"]


async def insert_ignore(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> bool:
    """INSERT unless the primary/unique key exists; True when the row was inserted."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(**values).on_conflict_do_nothing().returning(*table.primary_key.columns)
    result = await conn.execute(stmt)
    return result.first() is not None


async def upsert(conn: AsyncConnection, table: Table, values: dict[str, Any], update: dict[str, Any]) -> None:
    """INSERT, or on a primary key conflict UPDATE the row with ``update``."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = module.insert(table).values(**values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=list(table.primary_key.columns), set_=update))
