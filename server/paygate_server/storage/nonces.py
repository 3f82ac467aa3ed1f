"""Request nonces' rows (SPEC §3): record a batch in one statement, prune the expired.

A batch is one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` whatever its size:
a nonce that comes back from ``RETURNING`` is fresh, one that does not was already there.
The two databases pass a variable number of rows differently (arrays on PostgreSQL, one
JSON document on SQLite), so the statement has one spelling per database.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import request_nonces
from paygate_server.storage.statements import Sql, fetch_all

__all__ = ["prune_nonces", "record_nonces"]

# One statement for any batch size (one prepared statement on PostgreSQL).
_INSERT_POSTGRESQL = Sql(
    "INSERT INTO request_nonces (api_key, nonce, expires_at)"
    " SELECT * FROM unnest(:api_keys::text[], :nonces::text[], :expires::bigint[])"
    " ON CONFLICT DO NOTHING RETURNING api_key, nonce"
)
_INSERT_SQLITE = Sql(
    "INSERT INTO request_nonces (api_key, nonce, expires_at)"
    " SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(:rows) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING api_key, nonce"
)


async def record_nonces(db: Database, batch: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
    """Insert ``(api_key, nonce, expires_at)`` rows, committed on return; the
    ``(api_key, nonce)`` pairs that were not there yet."""
    async with db.write_one() as conn:
        if conn.dialect.name == "postgresql":
            rows = await fetch_all(conn, _INSERT_POSTGRESQL, api_keys=[k for k, _, _ in batch],
                                   nonces=[n for _, n, _ in batch], expires=[e for _, _, e in batch])
        else:
            rows = await fetch_all(conn, _INSERT_SQLITE, rows=jsoncodec.dumps(list(batch)).decode())
    return {(row["api_key"], row["nonce"]) for row in rows}


async def prune_nonces(db: Database) -> int:
    """Delete the nonces whose timestamp left the window (one transaction); how many."""
    async with db.write() as conn:
        result = await conn.execute(delete(request_nonces).where(request_nonces.c.expires_at < now_us()))
    return result.rowcount or 0
