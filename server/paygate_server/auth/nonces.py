"""The shared memory of request nonces, written in batches.

Every signed request inserts its nonce (SPEC §3) — three per payment — and each insert on
its own is a statement, a pool checkout and, on PostgreSQL, a commit with its WAL flush.
Requests that arrive together share one: a nonce joins the pending batch, and the batch is
written by one multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` as soon as the event
loop has run everything already runnable (``call_soon``), so an idle gateway adds no delay.
A nonce that comes back from ``RETURNING`` is fresh; one that does not was already there.
Two requests with the same key and nonce inside one batch: the first is the fresh one.

If the batch's write fails, every request of the batch fails with that error (none of them
is let through unrecorded).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from paygate_server import jsoncodec
from paygate_server.storage.statements import Sql, fetch_all

if TYPE_CHECKING:
    from paygate_server.storage import Database

__all__ = ["NonceBook"]

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


class NonceBook:
    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        self._db = db
        self._max_batch = max_batch
        self._pending: dict[tuple[str, str], tuple[int, asyncio.Future[bool]]] = {}
        self._flush_scheduled = False
        self.batches = 0

    async def remember(self, api_key: str, nonce: str, expires_at: int) -> bool:
        """Record the nonce; False if this key already used it (in the store or this batch)."""
        if (api_key, nonce) in self._pending:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending[(api_key, nonce)] = (expires_at, future)
        if len(self._pending) >= self._max_batch:
            self._start_flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        asyncio.get_running_loop().create_task(self._flush(batch))

    async def _flush(self, batch: dict[tuple[str, str], tuple[int, asyncio.Future[bool]]]) -> None:
        try:
            async with self._db.write_one() as conn:
                if conn.dialect.name == "postgresql":
                    rows = await fetch_all(
                        conn, _INSERT_POSTGRESQL, api_keys=[k for k, _ in batch], nonces=[n for _, n in batch],
                        expires=[e for e, _ in batch.values()])
                else:
                    rows = await fetch_all(conn, _INSERT_SQLITE, rows=jsoncodec.dumps(
                        [(k, n, e) for (k, n), (e, _) in batch.items()]).decode())
        except BaseException as exc:
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        fresh = {(row["api_key"], row["nonce"]) for row in rows}
        for key, (_, future) in batch.items():
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(key in fresh)
