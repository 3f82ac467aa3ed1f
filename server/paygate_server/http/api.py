"""The ``/api/v1`` endpoint wrapper: limits, authentication, JSON, errors, idempotency.

Order of work for every request, cheapest refusal first:

1. body over the limit → 413 (by ``Content-Length``, or while streaming), before any
   parsing or HMAC work;
2. authentication over the raw bytes (SPEC §3) → 401, and nothing else happens;
3. the endpoint: parse and validate (400, nothing stored), then execute — with an
   ``Idempotency-Key``, through :mod:`paygate_server.http.idempotency`.
"""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number
from paygate_server.errors import ApiError, error_body
from paygate_server.http.idempotency import IdempotencyScope, parse_idempotency_key
from paygate_server.http.middleware import MERCHANT_KEY, request_id_of
from paygate_server.http.request_input import parse_json_object, refuse_nul
from paygate_server.storage.port import ExistingKey, KeyClaim

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["ApiContext", "Replayed", "api_endpoint", "json_response", "error_response", "read_body"]

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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("body_too_large", f"request bodies are limited to {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def request_target(request: Request) -> str:
    """The request target exactly as sent: raw path plus ``?`` and the raw query."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


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
    _parsed: Any = field(default=None)

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
        scope = self.idempotency
        try:
            result = await operation(None if scope is None else scope.claim)
        except ApiError as exc:
            if scope is not None:
                await scope.store_error(self.gateway.payments, exc, self.request_id)
            raise
        if isinstance(result, ExistingKey):
            assert scope is not None  # only a claim finds a key
            raise Replayed(scope.judge(result))
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
            refuse_nul(request.query_params.multi_items())
            refuse_nul(request.path_params.items())
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
