"""Simulated pruning for the history tests: change-log rows deleted as pruning would delete them.

The real pruning path (its guard, partitions, ``paygate history prune``) is the ``prune``
branch's and was not on main when these tests were written, so rows are deleted here with the
append-only triggers switched off inside one transaction — they are back on when it commits.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import text

from paygate_server.storage import Database

__all__ = ["unguarded", "prune_rows", "forget_index"]


async def unguarded(db: Database, statement: str, **params: Any) -> int:
    """Run one statement on change_log with its append-only triggers off for this one
    transaction only; the number of rows it touched."""
    async with db.write() as conn:
        if db.is_sqlite:
            triggers = (await conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'change_log'"))).all()
            for name, _ in triggers:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            touched = (await conn.execute(text(statement), params)).rowcount
            for _, sql in triggers:
                await conn.execute(text(sql))
        else:
            await conn.execute(text("ALTER TABLE change_log DISABLE TRIGGER USER"))
            touched = (await conn.execute(text(statement), params)).rowcount
            await conn.execute(text("ALTER TABLE change_log ENABLE TRIGGER USER"))
    return int(touched)


async def prune_rows(db: Database, where: str, **params: Any) -> int:
    """Delete the change-log rows matching ``where``, as pruning would, and record how far
    it went as pruning does (``audit verify`` tells a pruned change from one a restored
    database lacks by that record)."""
    async with db.read() as conn:
        newest = (await conn.execute(text(f"SELECT max(id) FROM change_log WHERE {where}"), params)).scalar()
    deleted = await unguarded(db, f"DELETE FROM change_log WHERE {where}", **params)
    if newest is not None:
        async with db.write() as conn:
            await conn.execute(text("UPDATE change_log_prune SET pruned_through = :hi"
                                    " WHERE id = 1 AND pruned_through < :hi"), {"hi": int(newest)})
    return deleted


async def forget_index(db: Database, where: str = "1 = 1", **params: Any) -> None:
    """Delete the archive's index rows matching ``where`` (an index lost or never built)."""
    async with db.write() as conn:
        await conn.execute(text(f"DELETE FROM archive_index WHERE {where}"), params)
