"""Idempotency keys (SPEC §3), scoped to the merchant: the endpoint boundary's half.

The store claims a key in the same transaction (or statement) as the change it guards and
stores the answer with it (:class:`~paygate_server.storage.port.KeyClaim`); what it hands
back when the key was there already (:class:`~paygate_server.storage.port.ExistingKey`) is
judged here:

- same key, same method + target + body, answered → the stored answer, with
  ``Idempotent-Replayed: true``;
- same key, still running → ``409 idempotency_request_in_progress`` (a claim abandoned by a
  crash is taken over by the store after ``idempotency_lock_timeout_s``);
- same key, another request → ``422 idempotency_key_reused``.

Stored answers are sealed (AES-256-GCM under the master key's ``idempotency-response``
sub-key, bound to the merchant and the key's digest): an answer can hold a secret that is
kept nowhere else in the clear — an intent's ``clientSecret`` (only its hash is stored), a
webhook endpoint's ``whsec_`` secret (sealed in its own row) — and whoever reads the
database must not learn it from here. Every stored body goes through :meth:`IdempotencyScope.seal`.
"""
from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.crypto import SealError
from paygate_server.errors import ApiError, error_body
from paygate_server.storage.port import ExistingKey, KeyClaim, PaymentStore

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["IdempotencyScope", "parse_idempotency_key"]

log = logging.getLogger("paygate.idempotency")

SEAL_PURPOSE = "idempotency-response"
# A response stored before answers were sealed is JSON (sealed values start with 0x01);
# such rows are replayed as they are until they expire (idempotency_ttl_s after the upgrade).
_LEGACY_PLAINTEXT = b"{"
# Refusals that are judgements of the request itself, not a start of the operation: like a
# validation error, they store nothing (SPEC §3), so the key stays free for a corrected request.
_NOT_STORED = frozenset({"idempotency_key_reused", "idempotency_request_in_progress", "token_invalid"})


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


def replay(status: int, body: bytes) -> Response:
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
        stale_before = now_us() - gateway.settings.idempotency_lock_timeout_s * 1_000_000
        self.claim = KeyClaim(merchant_id, self.key, self.request_hash, stale_before, self.seal)

    def _aad(self) -> bytes:
        # Bound to its row: a sealed answer copied under another merchant or key does not open.
        return f"paygate/idempotency/v1\x00{self.merchant_id}\x00{self.key}".encode()

    def seal(self, body: bytes) -> bytes:
        """A response body as stored (see the module's docstring)."""
        return self._gateway.master_key.seal(SEAL_PURPOSE, body, self._aad())

    def open(self, stored: bytes) -> bytes:
        if stored[:1] == _LEGACY_PLAINTEXT:
            return stored
        try:
            return self._gateway.master_key.open(SEAL_PURPOSE, stored, self._aad())
        except SealError:
            # Another master key, or a tampered row: an operator's problem, not the client's.
            log.error("stored idempotent response for merchant %s does not open", self.merchant_id)
            raise ApiError("internal_error", "an internal error occurred") from None

    def judge(self, existing: ExistingKey) -> Response:
        """The key was there: its replay, or 422 / 409."""
        if existing.request_hash != self.request_hash:
            raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
        if existing.state == "done" and existing.response_status is not None and existing.response_body is not None:
            return replay(existing.response_status, self.open(existing.response_body))
        raise ApiError("idempotency_request_in_progress",
                       "a request with this Idempotency-Key is still being processed; retry later")

    async def peek(self, store: PaymentStore) -> Response | None:
        """Judge the key without claiming it (one read): the stored answer, 422 or 409 as
        a claim would give; None if the key is free (or its claim abandoned)."""
        existing = await store.find_key(self.merchant_id, self.key)
        if existing is None:
            return None
        if (existing.request_hash == self.request_hash and existing.state == "in_progress"
                and existing.locked_at < self.claim.stale_before):
            return None
        return self.judge(existing)

    async def answer(self, store: PaymentStore, status: int, body: bytes) -> Response:
        """Store the request's answer unless one is stored already; answer with the stored one."""
        if not await store.store_answer(self.claim, status, body):
            stored = await store.stored_answer(self.claim)
            if stored is not None:
                return Response(self.open(stored[1]), stored[0], media_type="application/json")
        return Response(body, status, media_type="application/json")

    async def store_error(self, store: PaymentStore, exc: ApiError, request_id: str) -> None:
        """An operation that started and then failed with a client error replays that error."""
        if exc.code in _NOT_STORED or exc.status >= 500:  # a 5xx is not the request's answer
            return
        await store.store_answer(self.claim, exc.status,
                                 jsoncodec.dumps(error_body(exc.code, exc.message, request_id, param=exc.param)))
