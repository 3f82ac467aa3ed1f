"""Request nonces' rows (SPEC §3): record a batch in one statement, prune the expired.

A nonce is stored as its digest (:func:`nonce_digest`), never as the client sent it: a
nonce is the client's text, and a random one can hold a 13–19-digit run that passes the
Luhn check, which a PCI data scanner reports as a card number. The digest is SHA-256, like
an ``Idempotency-Key``'s, but written in the letters ``a``–``p`` instead of hex's
``0``–``f`` (:mod:`paygate_server.letter_digests`): about 1.5 % of hex digests hold such
a run, one made of letters never does (docs/api.md, "a nonce is stored as a digest"). A
replay is found by the digest alone.

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
from paygate_server.letter_digests import sha256_letters
from paygate_server.storage.engine import Database
from paygate_server.storage.schema import request_nonces
from paygate_server.storage.statements import Sql, fetch_all

__all__ = ["nonce_digest", "prune_nonces", "record_nonces"]

# One statement for any batch size (one prepared statement on PostgreSQL).
_INSERT_POSTGRESQL = Sql(
    "INSERT INTO request_nonces (api_key, nonce, expires_at)"
    " SELECT * FROM unnest(:api_keys::text[], :digests::text[], :expires::bigint[])"
    " ON CONFLICT DO NOTHING RETURNING api_key, nonce"
)
_INSERT_SQLITE = Sql(
    "INSERT INTO request_nonces (api_key, nonce, expires_at)"
    " SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(:rows) WHERE true"
    " ON CONFLICT DO NOTHING RETURNING api_key, nonce"
)


def nonce_digest(nonce: str) -> str:
    """The stored form of a nonce: 64 letters ``a``–``p``, SHA-256 of its UTF-8 bytes."""
    return sha256_letters(nonce.encode())


async def record_nonces(db: Database, batch: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
    """Record ``(api_key, nonce, expires_at)`` as the nonces' digests, committed on return;
    the ``(api_key, nonce)`` pairs that were not there yet."""
    rows = [(key, nonce_digest(nonce), expires_at) for key, nonce, expires_at in batch]
    sent = {(key, digest): nonce for (key, digest, _), (_, nonce, _) in zip(rows, batch, strict=True)}
    async with db.write_one() as conn:
        if conn.dialect.name == "postgresql":
            fresh = await fetch_all(conn, _INSERT_POSTGRESQL, api_keys=[k for k, _, _ in rows],
                                    digests=[d for _, d, _ in rows], expires=[e for _, _, e in rows])
        else:
            fresh = await fetch_all(conn, _INSERT_SQLITE, rows=jsoncodec.dumps(rows).decode())
    return {(row["api_key"], sent[(row["api_key"], row["nonce"])]) for row in fresh}


async def prune_nonces(db: Database) -> int:
    """Delete the nonces whose timestamp left the window (one transaction); how many."""
    async with db.write() as conn:
        result = await conn.execute(delete(request_nonces).where(request_nonces.c.expires_at < now_us()))
    return result.rowcount or 0
