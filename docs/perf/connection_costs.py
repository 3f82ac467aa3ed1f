"""Client CPU of one PostgreSQL statement by way of connection handling (docs/performance.md,
"where the cost goes"), through the gateway's own ``Database`` and ``storage.statements``,
with plain asyncpg for reference. Needs a PostgreSQL server; default
``postgresql://127.0.0.1:5432/test``.

    .venv/bin/python docs/perf/connection_costs.py [URL]
"""
from __future__ import annotations

import sys
import time

import asyncpg
import uvloop

from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql://127.0.0.1:5432/test"
N = 3000
QUERY = Sql("select :n::int as n")


async def main() -> None:
    db = create_database(URL, pool_size=5)
    pool = await asyncpg.create_pool(URL, min_size=2, max_size=5)
    held = await pool.acquire()

    async def read() -> None:  # Database.read(): SQLAlchemy connection, autocommit
        async with db.read() as conn:
            await fetch_all(conn, QUERY, n=1)

    async def write_one_statement() -> None:  # a one-statement Database.write() unit
        async with db.write() as conn:
            await fetch_all(conn, QUERY, n=1)

    async def write_two_statements() -> None:  # the second statement of a unit alone costs
        async with db.write() as conn:
            await fetch_all(conn, QUERY, n=1)
            await fetch_all(conn, QUERY, n=2)

    async def read_one() -> None:  # Database.read_one(): statements.Autocommit
        async with db.read_one() as conn:
            await fetch_all(conn, QUERY, n=1)

    async def asyncpg_pool() -> None:
        async with pool.acquire() as conn:
            await conn.fetch(QUERY.positional, 1)

    async def held_connection() -> None:
        await held.fetch(QUERY.positional, 1)

    for name, fn in [("Database.read + statement", read),
                     ("Database.write + statement", write_one_statement),
                     ("Database.write + 2 statements", write_two_statements),
                     ("Database.read_one (Autocommit) + statement", read_one),
                     ("asyncpg pool + statement", asyncpg_pool),
                     ("statement on a held connection", held_connection)]:
        for _ in range(300):
            await fn()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(N):
            await fn()
        print(f"{name:44s} client CPU {1e6 * (time.process_time() - cpu) / N:6.1f} µs"
              f"   wall {1e6 * (time.perf_counter() - wall) / N:6.1f} µs")
    await pool.release(held)
    await pool.close()
    await db.dispose()


uvloop.run(main())
