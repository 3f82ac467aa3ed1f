"""The ``/api/v1`` endpoint wrapper: limits, authentication, JSON, errors, idempotency.

Order of work for every request, cheapest refusal first:

1. body over the limit → 413 (by ``Content-Length``, or while streaming), before any
   parsing or HMAC work;
2. authentication over the raw bytes (SPEC §3) → 401, and nothing else happens;
3. the endpoint: parse and validate (400, nothing stored), then execute — with an
   ``Idempotency-Key``, through :meth:`ApiContext.idempotently`.

Idempotency keys (SPEC §3), scoped to the merchant: the endpoint boundary's half.

The store claims a key in the same transaction (or statement) as the change it guards and
stores the answer with it (:class:`~paygate_server.storage.port.KeyClaim`); what it hands
back when the key was there already (:class:`~paygate_server.storage.port.ExistingKey`) is
judged here:

- same key, same method + target + body, answered → the stored answer, with
  ``Idempotent-Replayed: true``;
- same key, still running → ``409 idempotency_request_in_progress``; a claim abandoned
  (its holder cut off after its first phase committed) past ``idempotency_lock_timeout_s``
  is answered by the operation with what it began, as it is now (never begun again);
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import now_us
from paygate_server.crypto import SealError
from paygate_server.errors import ApiError, error_body
from paygate_server.http.middleware import MERCHANT_KEY, request_id_of
from paygate_server.http.request_input import parse_json_object, refuse_nul
from paygate_server.letter_digests import as_letters, hex_spelling, sha256_letters
from paygate_server.storage.port import ExistingKey, KeyClaim, PaymentStore, claim_abandoned

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["ApiContext", "IdempotencyScope", "Replayed", "api_endpoint", "error_response", "json_response",
           "parse_idempotency_key", "read_body"]

# The API's names of the path's parameters (a refusal names the field as the wire does: a
# route's ``{intent_id}`` is the intent's ``paymentIntentId``).
_PATH_WIRE_NAMES = {"intent_id": "paymentIntentId", "endpoint_id": "webhookEndpointId"}

log = logging.getLogger("paygate.api")

Handler = Callable[["ApiContext"], Awaitable[Response]]
T = TypeVar("T")


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(jsoncodec.dumps(body), status, headers, media_type="application/json")


def error_response(exc: ApiError, request_id: str) -> Response:
    body = error_body(exc.code, exc.message, request_id, param=exc.param)
    return json_response(exc.status, body, exc.headers or None)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError("body_too_large", f"request bodies are limited to {limit} bytes")
        except ValueError:
            raise ApiError("invalid_json", "Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("body_too_large", f"request bodies are limited to {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The connection closed before the body's end (the client left, or sent it too
        # slowly: headerguard's body timeout). A client error, answered to no one — it was
        # a 500 "unhandled error" with a traceback in the log, for anyone to cause at will.
        raise ApiError("invalid_json", "the connection closed before the request body was complete") from None
    return b"".join(chunks)


def request_target(request: Request) -> str:
    """The request target exactly as sent: raw path plus ``?`` and the raw query — but
    ``/path?`` is ``/path`` here: the ASGI scope's query string is empty for both, so a
    client signs an empty query without its ``?`` (docs/api.md)."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


SEAL_PURPOSE = "idempotency-response"
# A response stored before answers were sealed is JSON (sealed values start with 0x01);
# such rows are replayed as they are until they expire (idempotency_ttl_s after the upgrade).
_LEGACY_PLAINTEXT = b"{"
# Refusals that are judgements of the request itself, not a start of the operation: like a
# validation error, they store nothing (SPEC §3), so the key stays free for a corrected request.
# A 429 too: a replay carries only the stored status and body, and a 429 without its
# Retry-After breaks SPEC §2 (a retry under the key is refused afresh, with the header).
_NOT_STORED = frozenset({"idempotency_key_reused", "idempotency_request_in_progress", "token_invalid",
                         "rate_limited"})


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


class IdempotencyScope:
    def __init__(self, gateway: Gateway, merchant_id: str, key: str, method: str, target: str, body: bytes) -> None:
        self._gateway = gateway
        self.merchant_id = merchant_id
        # Only a digest of the key is stored: a key is the client's free text and could hold
        # anything (even something that looks like a card number), and the digest is
        # enough to find it again. Digests in letters, never hex: a hex one can hold a
        # Luhn-valid run of digits (letter_digests.py; docs/api.md).
        self.key = sha256_letters(key.encode())
        digest = hashlib.sha256(f"{method}\n{target}\n".encode())
        digest.update(body)
        self.request_hash = as_letters(digest.hexdigest())
        now = now_us()
        settings = gateway.settings
        self.claim = KeyClaim(merchant_id, self.key, self.request_hash,
                              now - settings.idempotency_lock_timeout_s * 1_000_000, self.seal,
                              now - settings.idempotency_ttl_s * 1_000_000)

    def _aad(self, in_hex: bool = False) -> bytes:
        # Bound to its row: a sealed answer copied under another merchant or key does not open.
        # A row stored before migration 0019 was sealed under the key's hex digest.
        key = hex_spelling(self.key) if in_hex else self.key
        return f"paygate/idempotency/v1\x00{self.merchant_id}\x00{key}".encode()

    def seal(self, body: bytes) -> bytes:
        """A response body as stored (see the module's docstring)."""
        return self._gateway.master_key.seal(SEAL_PURPOSE, body, self._aad())

    def open(self, stored: bytes, in_hex: bool = False) -> bytes:
        """A stored answer's body (``in_hex``: found under the key's hex digest, ExistingKey)."""
        if stored[:1] == _LEGACY_PLAINTEXT:
            return stored
        try:
            return self._gateway.master_key.open(SEAL_PURPOSE, stored, self._aad(in_hex))
        except SealError:
            # Another master key, or a tampered row: an operator's problem, not the client's.
            log.error("stored idempotent response for merchant %s does not open", self.merchant_id)
            raise ApiError("internal_error", "an internal error occurred") from None

    def judge(self, existing: ExistingKey) -> Response:
        """The key was there: its replay, or 422 / 409."""
        if existing.request_hash != self.request_hash:
            raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different request")
        if existing.state == "done" and existing.response_status is not None and existing.response_body is not None:
            return Response(self.open(existing.response_body, existing.in_hex), existing.response_status,
                            {"Idempotent-Replayed": "true"}, media_type="application/json")
        raise ApiError("idempotency_request_in_progress",
                       "a request with this Idempotency-Key is still being processed; retry later")

    async def peek(self, store: PaymentStore) -> ExistingKey | None:
        """The key's row without claiming it (one read), abandoned or not; None: free."""
        found = await store.find_key(self.claim)
        return None if found is None else replace(found, abandoned=claim_abandoned(found, self.claim))

    async def answer(self, store: PaymentStore, status: int, body: bytes) -> Response:
        """Store the request's answer unless one is stored already; answer with the stored one."""
        if not await store.store_answer(self.claim, status, body):
            stored = await store.stored_answer(self.claim)
            if stored is not None:
                return Response(self.open(stored[1]), stored[0], media_type="application/json")
        return Response(body, status, media_type="application/json")

    async def run(self, store: PaymentStore, operation: Callable[[KeyClaim | None], Awaitable[T | ExistingKey]],
                  request_id: str) -> T:
        """Run ``operation`` under this key: its result; :class:`Replayed` with the stored
        answer (or ApiError 422/409) when the key was there already; a client error stored
        for replay and raised. Needs no request: the console's forms use it too."""
        try:
            result = await operation(self.claim)
        except ApiError as exc:
            await self.store_error(store, exc, request_id)
            raise
        if isinstance(result, ExistingKey):
            raise Replayed(self.judge(result))
        return result

    async def store_error(self, store: PaymentStore, exc: ApiError, request_id: str) -> None:
        """An operation that started and then failed with a client error replays that error."""
        if exc.code in _NOT_STORED or exc.status >= 500:  # a 5xx is not the request's answer
            return
        await store.store_answer(self.claim, exc.status,
                                 jsoncodec.dumps(error_body(exc.code, exc.message, request_id, param=exc.param)))


@dataclass(slots=True)
class ApiContext:
    request: Request
    gateway: Gateway
    request_id: str
    merchant_id: str
    api_key: str
    method: str
    target: str
    body: bytes
    idempotency: IdempotencyScope | None = None

    def json_object(self, *, ciphertext_at: tuple[tuple[str, ...], ...] = ()) -> dict[str, Any]:
        """The body as a JSON object, refused if it carries a plaintext card number.

        ``ciphertext_at``: the key paths where this endpoint takes a card JWE (the only
        places the detector lets a JWE compact string through unread).
        """
        value = parse_json_object(self.body)
        if contains_card_number(value, ciphertext_at=ciphertext_at):
            raise ApiError(
                "plaintext_card_data",
                "the request contains what looks like a card number outside an encrypted "
                "field; send card data only through the checkout or encryptedCard",
            )
        return value

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    async def idempotently(self, operation: Callable[[KeyClaim | None], Awaitable[T | ExistingKey]]) -> T:
        """Run an operation under the request's ``Idempotency-Key``, if it has one: the
        one wrapper of every idempotent endpoint.

        The operation gets the key's claim, which the store makes in the same transaction
        (or statement) as the operation's first change, storing the answer with the last
        one where it can. A key that was there already comes back as
        :class:`ExistingKey` and is judged here (:class:`Replayed` with the stored answer,
        422 or 409). A client error is stored for replay; an internal failure stores
        nothing.
        """
        if self.idempotency is not None:
            return await self.idempotency.run(self.gateway.payments, operation, self.request_id)
        result = await operation(None)
        assert not isinstance(result, ExistingKey)  # only a claim finds a key
        return result

    async def execute(self, change: Callable[[Any], Awaitable[tuple[int, Any]]]) -> Response:
        """A one-transaction change of another domain (its storage functions run on the
        transaction ``change`` is given), idempotently when the request has a key."""
        async def encoded(conn: Any) -> tuple[int, bytes]:
            status, body = await change(conn)
            return status, jsoncodec.dumps(body)

        status, data = await self.idempotently(lambda claim: self.gateway.payments.change_with_key(claim, encoded))
        return Response(data, status, media_type="application/json")

    async def answer(self, status: int, data: bytes, *, stored: bool) -> Response:
        """The response, stored first as the key's answer unless the operation ``stored`` it
        with its change (then another answer stored meanwhile wins)."""
        if self.idempotency is None or stored:
            return Response(data, status, media_type="application/json")
        return await self.idempotency.answer(self.gateway.payments, status, data)


class Replayed(Exception):
    """The idempotency key was already used for this request: answer with its response."""

    def __init__(self, response: Response) -> None:
        self.response = response


def api_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rid = request_id_of(request.scope)
        gateway: Gateway = request.state.gateway
        try:
            body = await read_body(request, gateway.settings.max_body_bytes)
            target = request_target(request)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
            principal = await gateway.authenticator.authenticate(
                method=request.method, target=target, headers=headers, body=body
            )
            request.scope[MERCHANT_KEY] = principal.merchant_id
            # Keys too: "?4242424242424242" is a key with an empty value.
            if contains_card_number(request.query_params.multi_items()):
                raise ApiError("plaintext_card_data", "the query string contains what looks like a card number")
            # And the path: SPEC §4 refuses a card number anywhere in a request, an id's place included.
            if contains_card_number(list(request.path_params.values())):
                raise ApiError("plaintext_card_data", "the path contains what looks like a card number")
            refuse_nul(request.query_params.multi_items())
            refuse_nul((_PATH_WIRE_NAMES.get(name, name), value) for name, value in request.path_params.items())
            ctx = ApiContext(request, gateway, rid, principal.merchant_id, principal.api_key,
                             request.method, target, body)
            if request.method == "POST":
                key = parse_idempotency_key(headers.get("idempotency-key"))
                if key is not None:
                    ctx.idempotency = IdempotencyScope(gateway, principal.merchant_id, key, request.method, target, body)
            return await handler(ctx)
        except Replayed as replayed:
            return replayed.response
        except ApiError as exc:
            return error_response(exc, rid)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint
