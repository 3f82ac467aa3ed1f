"""Client CPU of one PostgreSQL statement by way of connection handling (docs/performance.md,
third pass). Needs a PostgreSQL server; default ``postgresql://127.0.0.1:5432/test``.

    .venv/bin/python docs/perf/connection_costs.py [URL]
"""
from __future__ import annotations

import sys
import time

import asyncpg
import uvloop
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import greenlet_spawn

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql://127.0.0.1:5432/test"
N = 3000
QUERY = "select $1::int"


async def main() -> None:
    engine = create_async_engine(URL.replace("postgresql://", "postgresql+asyncpg://"), pool_size=5)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    pool = await asyncpg.create_pool(URL, min_size=2, max_size=5)
    held = await pool.acquire()

    async def sqlalchemy_connect() -> None:  # what Database.read() did per read
        async with autocommit.connect() as conn:
            await conn.sync_connection.connection.dbapi_connection._connection.fetch(QUERY, 1)

    async def sqlalchemy_begin_commit() -> None:  # a one-statement Database.write() unit
        async with engine.begin() as conn:
            adapter = conn.sync_connection.connection.dbapi_connection
            await adapter._start_transaction()
            await adapter._connection.fetch(QUERY, 1)

    async def pool_checkout() -> None:  # Database.autocommit(): statements.Autocommit
        fairy = await autocommit.raw_connection()
        try:
            await fairy.driver_connection.fetch(QUERY, 1)
        finally:
            await greenlet_spawn(fairy._close_special, True)

    async def asyncpg_pool() -> None:
        async with pool.acquire() as conn:
            await conn.fetch(QUERY, 1)

    async def held_connection() -> None:
        await held.fetch(QUERY, 1)

    for name, fn in [("SQLAlchemy connect + statement", sqlalchemy_connect),
                     ("SQLAlchemy begin + statement + commit", sqlalchemy_begin_commit),
                     ("pool checkout (Autocommit) + statement", pool_checkout),
                     ("asyncpg pool + statement", asyncpg_pool),
                     ("statement on a held connection", held_connection)]:
        for _ in range(300):
            await fn()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(N):
            await fn()
        print(f"{name:40s} client CPU {1e6 * (time.process_time() - cpu) / N:6.1f} µs"
              f"   wall {1e6 * (time.perf_counter() - wall) / N:6.1f} µs")
    await pool.release(held)
    await pool.close()
    await engine.dispose()


uvloop.run(main())
