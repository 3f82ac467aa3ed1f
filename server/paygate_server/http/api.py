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

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import now_us
from paygate_server.errors import ApiError, error_body
from paygate_server.http.idempotency import CLAIM_DONE_CTE, IdempotencyScope, parse_idempotency_key
from paygate_server.http.middleware import MERCHANT_KEY, request_id_of
from paygate_server.http.request_input import parse_json_object, refuse_nul
from paygate_server.storage.statements import Sql, execute

if TYPE_CHECKING:
    from paygate_server.state import Gateway

__all__ = ["ApiContext", "Replayed", "api_endpoint", "json_response", "error_response", "read_body"]

log = logging.getLogger("paygate.api")

Handler = Callable[["ApiContext"], Awaitable[Response]]
Operation = Callable[[AsyncConnection], Awaitable[tuple[int, Any]]]
T = TypeVar("T")

# Insert statements with the Idempotency-Key's claim in front (PostgreSQL), made once each.
_WITH_CLAIM: dict[Sql, Sql] = {}


def _with_claim(sql: Sql) -> Sql:
    found = _WITH_CLAIM.get(sql)
    if found is None:
        found = _WITH_CLAIM[sql] = Sql(f"WITH {CLAIM_DONE_CTE} {sql.text}")
    return found


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

    async def execute(self, operation: Operation) -> Response:
        """Run a one-transaction state change, idempotently when the request has a key.

        With a key, the claim, the change and the stored response commit together; a
        duplicate arriving meanwhile waits on the key's row (PostgreSQL) or the write lock
        (SQLite) and then replays the stored response.
        """
        db = self.gateway.db
        scope = self.idempotency
        try:
            async with db.write() as conn:
                if scope is not None:
                    replay = await scope.begin(conn)
                    if replay is not None:
                        return replay
                status, body = await operation(conn)
                data = jsoncodec.dumps(body)
                if scope is not None:
                    await scope.complete(conn, status, data)
        except ApiError as exc:
            if scope is not None:
                await scope.store_error(db, exc, self.request_id)
            raise
        return Response(data, status, media_type="application/json")

    async def execute_insert(self, sql: Sql, params: dict[str, Any], status: int, body: Any) -> Response:
        """A state change that is one insert whose answer is known before it runs (a create).

        On PostgreSQL that is one statement in autocommit — with an ``Idempotency-Key``,
        the key's row and its stored answer go into the same statement (a writable CTE) —
        so one round trip and no BEGIN/COMMIT. A key that already exists fails that
        statement, which then changed nothing, and the request takes the general way
        (:meth:`execute`: replay, 409 or 422). SQLite always takes the general way (its
        writes share group commits instead).
        """
        db = self.gateway.db

        async def operation(conn: AsyncConnection) -> tuple[int, Any]:
            await execute(conn, sql, **params)
            return status, body

        if db.is_sqlite:
            return await self.execute(operation)
        scope = self.idempotency
        data = jsoncodec.dumps(body)
        async with db.autocommit() as conn:
            if scope is None:
                await execute(conn, sql, **params)
                return Response(data, status, media_type="application/json")
            try:
                await execute(conn, _with_claim(sql), **params, **scope.statement_params(),
                              idem_now=now_us(), idem_status=status, idem_body=scope.seal(data))
                return Response(data, status, media_type="application/json")
            except IntegrityError:
                pass  # the key exists (a retry, or a reuse): judged below
        return await self.execute(operation)

    async def first_phase(self, phase: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """The first transaction of a multi-phase operation (processing, refunds).

        With an ``Idempotency-Key`` the key is claimed ``in_progress`` in the same
        transaction (so the claim and the first state change commit together); a duplicate
        arriving while later phases run sees it in progress (409). A stored response
        raises :class:`Replayed`; a client error is stored for replay (in a transaction of
        its own, the phase's having rolled back); an internal failure stores nothing. The
        caller completes the key with its final response.
        """
        db = self.gateway.db
        scope = self.idempotency
        try:
            async with db.write() as conn:
                if scope is not None and (replay := await scope.begin(conn)) is not None:
                    raise Replayed(replay)
                return await phase(conn)
        except ApiError as exc:
            if scope is not None:
                await scope.store_error(db, exc, self.request_id)
            raise


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
