"""Idempotency keys (SPEC §3), scoped to the merchant.

A key row is claimed in the same transaction as the change it guards (``begin`` …
``complete``), so the stored response and the state change commit or vanish together.
Multi-phase operations (processing: commit the attempt, call the processor, record the
outcome) instead ``claim`` the key in a transaction of its own; a concurrent duplicate
then sees it ``in_progress`` and gets ``409 idempotency_request_in_progress``. A claim
abandoned by a crash is taken over after ``idempotency_lock_timeout_s``.

Same key, same method + target + body → the stored response, with
``Idempotent-Replayed: true``. Same key, another request → ``422 idempotency_key_reused``.

Stored responses are sealed (AES-256-GCM under the master key's ``idempotency-response``
sub-key, bound to the merchant and the key's digest): an answer can hold a secret that is
kept nowhere else in the clear — an intent's ``clientSecret`` (only its hash is stored), a
webhook endpoint's ``whsec_`` secret (sealed in its own row) — and whoever reads the
database must not learn it from here. Every stored body goes through :meth:`IdempotencyScope.seal`,
the one-statement CTEs below included (their ``:idem_body`` is sealed by the caller).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.crypto import SealError
from paygate_server.errors import ApiError, error_body
from paygate_server.storage import Database
from paygate_server.storage.schema import idempotency_keys as keys
from paygate_server.storage.statements import Sql, execute, fetch_one

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = [
    "CLAIM_DONE_CTE",
    "IdempotencyScope",
    "answer_cte",
    "claim_in_progress_cte",
    "parse_idempotency_key",
    "prune_idempotency_keys",
]

log = logging.getLogger("paygate.idempotency")

SEAL_PURPOSE = "idempotency-response"
# A response stored before answers were sealed is JSON (sealed values start with 0x01);
# such rows are replayed as they are until they expire (idempotency_ttl_s after the upgrade).
_LEGACY_PLAINTEXT = b"{"
# Refusals that are judgements of the request itself, not a start of the operation: like a
# validation error, they store nothing (SPEC §3), so the key stays free for a corrected request.
_NOT_STORED = frozenset({"idempotency_key_reused", "idempotency_request_in_progress", "token_invalid"})

_KEY = "merchant_id = :merchant_id AND idempotency_key = :key"
_INSERT = Sql(
    "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_hash, state, locked_at, created_at)"
    " VALUES (:merchant_id, :key, :request_hash, :state, :now, :now) ON CONFLICT DO NOTHING"
)
_EXISTING = Sql(
    "SELECT request_hash, state, locked_at, response_status, response_body"
    f" FROM idempotency_keys WHERE {_KEY}"
)
_TAKE_OVER = Sql(
    f"UPDATE idempotency_keys SET locked_at = :now WHERE {_KEY}"
    " AND state = 'in_progress' AND locked_at = :locked_at"
)
_COMPLETE = Sql(
    "UPDATE idempotency_keys SET state = 'done', response_status = :status, response_body = :body"
    f" WHERE {_KEY}"
)
_COMPLETE_ONCE = Sql(_COMPLETE.text + " AND state = 'in_progress'")
_STORED = Sql(f"SELECT response_status, response_body FROM idempotency_keys WHERE {_KEY} AND state = 'done'")
_RELEASE = Sql(f"DELETE FROM idempotency_keys WHERE {_KEY} AND state = 'in_progress'")

# The key's row as one CTE of a larger single statement (PostgreSQL's one-round-trip paths:
# intents/endpoints.py, processing/attempts.py). Parameters: :idem_merchant_id, :idem_key,
# :idem_request_hash (IdempotencyScope.statement_params), :idem_now, and :idem_status /
# :idem_body where a response is stored. Without ON CONFLICT: a key that exists makes the
# whole statement fail (and change nothing), and the caller takes the general path.
_KEY_COLUMNS = "merchant_id, idempotency_key, request_hash, state, locked_at, created_at"
_KEY_VALUES = ":idem_merchant_id, :idem_key, :idem_request_hash"
CLAIM_DONE_CTE = (
    f"idempotency_claim AS (INSERT INTO idempotency_keys ({_KEY_COLUMNS}, response_status, response_body)"
    f" VALUES ({_KEY_VALUES}, 'done', :idem_now, :idem_now, :idem_status, :idem_body))"
)


def claim_in_progress_cte(source: str) -> str:
    """Claim the key ``in_progress`` once per row of the CTE ``source`` (none: no claim)."""
    return (f"idempotency_claim AS (INSERT INTO idempotency_keys ({_KEY_COLUMNS})"
            f" SELECT {_KEY_VALUES}, 'in_progress', :idem_now, :idem_now FROM {source})")


def answer_cte(guard: str) -> str:
    """Store :idem_body as the key's response (first writer wins) if ``guard`` holds."""
    return ("idempotency_answer AS (UPDATE idempotency_keys SET state = 'done', response_status = 200,"
            " response_body = :idem_body WHERE merchant_id = :idem_merchant_id AND idempotency_key = :idem_key"
            f" AND state = 'in_progress' AND {guard} RETURNING 1)")


def parse_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 255 or not all(" " <= ch <= "~" for ch in value):
        raise ApiError(
            "parameter_invalid",
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            param="Idempotency-Key",
        )
    return value


def _in_progress() -> ApiError:
    return ApiError(
        "idempotency_request_in_progress",
        "a request with this Idempotency-Key is still being processed; retry later",
    )


def _replay(status: int, body: bytes) -> Response:
    return Response(body, status, {"Idempotent-Replayed": "true"}, media_type="application/json")


class IdempotencyScope:
    def __init__(self, gateway: Gateway, merchant_id: str, key: str, method: str, target: str, body: bytes) -> None:
        self._gateway = gateway
        self.merchant_id = merchant_id
        # Only a digest of the key is stored: a key is the client's free text and could hold
        # anything (even something that looks like a card number), and the digest is
        # enough to find it again.
        self.key = hashlib.sha256(key.encode()).hexdigest()
        digest = hashlib.sha256(f"{method}\n{target}\n".encode())
        digest.update(body)
        self.request_hash = digest.hexdigest()

    def _ids(self) -> dict[str, str]:
        return {"merchant_id": self.merchant_id, "key": self.key}

    def _aad(self) -> bytes:
        # Bound to its row: a sealed answer copied under another merchant or key does not open.
        return f"paygate/idempotency/v1\x00{self.merchant_id}\x00{self.key}".encode()

    def seal(self, body: bytes) -> bytes:
        """A response body as stored (see the module's docstring)."""
        return self._gateway.master_key.seal(SEAL_PURPOSE, body, self._aad())

    def _open(self, stored: bytes) -> bytes:
        if stored[:1] == _LEGACY_PLAINTEXT:
            return stored
        try:
            return self._gateway.master_key.open(SEAL_PURPOSE, stored, self._aad())
        except SealError:
            # Another master key, or a tampered row: an operator's problem, not the client's.
            log.error("stored idempotent response for merchant %s does not open", self.merchant_id)
            raise ApiError("internal_error", "an internal error occurred") from None

    def statement_params(self) -> dict[str, str]:
        """The key's parameters for the CTEs above."""
        return {"idem_merchant_id": self.merchant_id, "idem_key": self.key, "idem_request_hash": self.request_hash}

    async def _insert(self, conn: AsyncConnection, state: str) -> bool:
        return await execute(conn, _INSERT, **self._ids(), request_hash=self.request_hash,
                             state=state, now=now_us()) == 1

    def _judge(self, row: Mapping[str, Any]) -> Response | None:
        """An existing row: its replay, 422, 409 while it runs, or None for a stale claim."""
        if row["request_hash"] != self.request_hash:
            raise ApiError(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        if row["state"] == "done":
            return _replay(row["response_status"], self._open(bytes(row["response_body"])))
        stale_before = now_us() - self._gateway.settings.idempotency_lock_timeout_s * 1_000_000
        if row["locked_at"] >= stale_before:
            raise _in_progress()
        return None

    async def _existing(self, conn: AsyncConnection) -> Response | None:
        """Judge an existing row: replay, 422, 409, or None when a stale claim was taken over."""
        row = await fetch_one(conn, _EXISTING, **self._ids())
        if row is None:  # pruned between our insert attempt and this read: treat as new
            return None
        replay = self._judge(row)
        if replay is None and not await execute(conn, _TAKE_OVER, **self._ids(), locked_at=row["locked_at"],
                                                now=now_us()):
            raise _in_progress()
        return replay

    async def peek(self, db: Database) -> Response | None:
        """Judge the key without claiming it (one read): the stored answer, 422 or 409 as
        :meth:`begin` would give; None if the key is free (or its claim abandoned)."""
        async with db.read_one() as conn:
            row = await fetch_one(conn, _EXISTING, **self._ids())
        return None if row is None else self._judge(row)

    async def begin(self, conn: AsyncConnection) -> Response | None:
        """Inside the operation's own transaction. A replay, or None to go on."""
        if await self._insert(conn, "in_progress"):
            return None
        return await self._existing(conn)

    async def claim(self, db: Database) -> Response | None:
        """In a transaction of its own (multi-phase operations)."""
        async with db.write() as conn:
            return await self.begin(conn)

    async def complete(self, conn: AsyncConnection, status: int, body: bytes) -> None:
        await execute(conn, _COMPLETE, **self._ids(), status=status, body=self.seal(body))

    async def complete_once(self, conn: AsyncConnection, status: int, body: bytes) -> bool:
        """Store the response unless someone already did (first writer wins)."""
        return await execute(conn, _COMPLETE_ONCE, **self._ids(), status=status, body=self.seal(body)) == 1

    async def stored(self, conn: AsyncConnection) -> tuple[int, bytes] | None:
        row = await fetch_one(conn, _STORED, **self._ids())
        return None if row is None else (row["response_status"], self._open(bytes(row["response_body"])))

    async def store_error(self, db: Database, exc: ApiError, request_id: str) -> None:
        """An operation that started and then failed with a client error replays that error."""
        if exc.code in _NOT_STORED or exc.status >= 500:  # a 5xx is not the request's answer
            return
        body = jsoncodec.dumps(error_body(exc.code, exc.message, request_id, param=exc.param))
        async with db.write() as conn:
            if await self._insert(conn, "done"):
                await self.complete(conn, exc.status, body)
            else:
                await self.complete_once(conn, exc.status, body)

    async def release(self, db: Database) -> None:
        """Forget an in-progress claim after an internal failure, so a retry runs again."""
        async with db.write() as conn:
            await execute(conn, _RELEASE, **self._ids())


async def prune_idempotency_keys(conn: AsyncConnection, ttl_s: int) -> int:
    cutoff = now_us() - ttl_s * 1_000_000
    result = await conn.execute(delete(keys).where(keys.c.created_at < cutoff, keys.c.state == "done"))
    return result.rowcount or 0
