"""The shared memory of request nonces, written in batches.

Every signed request inserts its nonce (SPEC §3) — three per payment — and each insert on
its own is a statement, a pool checkout and, on PostgreSQL, a commit with its WAL flush.
Requests that arrive together share one: a nonce joins the pending batch, and the batch is
written by one statement (:func:`paygate_server.storage.nonces.record_nonces`) as soon as
the event loop has run everything already runnable (``call_soon``), so an idle gateway
adds no delay. Two requests with the same key and nonce inside one batch: the first is the
fresh one.

If the batch's write fails, every request of the batch fails with that error (none of them
is let through unrecorded).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from paygate_server.storage.nonces import record_nonces

if TYPE_CHECKING:
    from paygate_server.storage import Database

__all__ = ["NonceBook"]


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
            fresh = await record_nonces(self._db, [(k, n, e) for (k, n), (e, _) in batch.items()])
        except BaseException as exc:
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        for key, (_, future) in batch.items():
            if not future.done():  # its request may have been cancelled meanwhile
                future.set_result(key in fresh)
