"""One trivial round trip to the database, bounded: what a readiness check asks
(paygate_server/readiness.py, ``GET /readyz``).

No such helper existed: :mod:`.availability` classifies failures that happened to real
statements, it never goes looking. This one does, with a hard bound, and leaves no
connection behind in an unknown state.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from paygate_server.storage.statements import Sql, fetch_value

if TYPE_CHECKING:
    from paygate_server.storage.engine import Database

__all__ = ["ping"]

_ONE = Sql("SELECT 1")


async def ping(db: Database, timeout_s: float) -> None:
    """Check a pooled connection out, run ``SELECT 1`` on it, give it back; within
    ``timeout_s`` or ``TimeoutError``. Any other failure (the server unreachable, the pool
    empty past its timeout, a dropped connection) is raised as the driver or pool raised it.

    The bound covers the wait for a pooled connection too: a saturated pool reads as not
    ready once it keeps a connection from us that long (docs/operations.md, "Health checks").
    """
    async with asyncio.timeout(timeout_s), db.read_one() as conn:
        try:
            if await fetch_value(conn, _ONE) != 1:
                raise RuntimeError("SELECT 1 did not answer 1")
        except asyncio.CancelledError:
            # Cut short by the bound, asyncpg may still be cancelling the statement on
            # this connection: it is closed, never handed to a request half-way through.
            # (A connection found dead is invalidated where it failed: storage/statements.py.)
            await conn.invalidate()
            raise
