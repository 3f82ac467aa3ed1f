"""The simulator's Starlette application: routes and the charge/refund flows."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import os
import pathlib
import random
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from paygate_server import jsoncodec

from . import cards
from .faults import FaultConfig, FaultError, FaultInjector
from .protocol import (
    MAX_BODY_BYTES,
    ProtocolError,
    charge_body,
    charge_summary,
    error_body,
    parse_charge,
    parse_date,
    parse_json,
    parse_refund,
    refund_body,
    rfc3339,
    settlement_body,
)
from .store import ChargeDisposition, ChargeMode, ChargeRecord, RefundDisposition, Store

__all__ = ["ConnectionDropped", "Simulator", "create_app", "install_log_filter"]

SEED_ENV = "PAYGATE_SIMULATOR_SEED"
_AUTH_ALPHABET = string.ascii_uppercase + string.digits


class ConnectionDropped(Exception):
    """Raised after a partial response so that the server closes the connection.

    This is how the simulator "loses" an answer (card 4000000000001026,
    ``dropResponseRate``): the response head and part of the body are written, then the
    ASGI app fails; uvicorn can only close the transport, and the client sees the
    connection end before the promised ``Content-Length``.
    """


class _DropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for every deliberate drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info
        return not (exc and isinstance(exc[1], ConnectionDropped))


_DROP_FILTER = _DropFilter()


def install_log_filter() -> None:
    # addFilter ignores a filter that is already installed, so this is idempotent.
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)


class _DroppedResponse(Response):
    def __init__(self) -> None:  # no body to render
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"reference":', "more_body": True})
        raise ConnectionDropped("response dropped on purpose")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content)


def _answer(body: dict[str, Any], *, replayed: bool) -> JSONResponse:
    response = JSONResponse(body)
    if replayed:  # the same reference again: the first answer, marked as a replay
        response.headers["Idempotent-Replayed"] = "true"
    return response


@dataclass(slots=True)
class Simulator:
    """Process-wide state, reachable from handlers as ``request.app.state.simulator``."""

    store: Store
    faults: FaultInjector
    rng: random.Random
    slow_card_delay_s: float

    def auth_code(self) -> str:
        return "".join(self.rng.choices(_AUTH_ALPHABET, k=6))


def _sim(request: Request) -> Simulator:
    return request.app.state.simulator  # type: ignore[no-any-return]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ProtocolError(413, "body_too_large", "request body is larger than 64 KiB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ProtocolError(413, "body_too_large", "request body is larger than 64 KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


# --- charges ------------------------------------------------------------------------------


async def post_charge(request: Request) -> Response:
    sim = _sim(request)
    charge = parse_charge(parse_json(await _read_body(request)))
    fault = sim.faults.draw()
    if fault.delay_s:
        await asyncio.sleep(fault.delay_s)
    now = _utcnow()
    behaviour = cards.evaluate(charge.digits, charge.exp_month, charge.exp_year, now.date())
    if behaviour.delay_s:
        # Processing time (card 1042): the charge is recorded when it is over.
        await asyncio.sleep(behaviour.delay_s)
        now = _utcnow()
    action = behaviour.action
    if fault.error or action is cards.Action.ERROR:
        mode = ChargeMode.ERROR_IF_NEW
    elif action is cards.Action.RETRY_FIRST:
        mode = ChargeMode.RETRY_FIRST
    else:
        mode = ChargeMode.RECORD
    declined = action is cards.Action.DECLINE
    record = ChargeRecord(
        reference=charge.reference,
        payment_intent_id=charge.payment_intent_id,
        merchant_id=charge.merchant_id,
        amount=charge.amount,
        currency=charge.currency,
        card_brand=cards.brand_of(charge.digits),
        card_last4=charge.digits[-4:],
        status="declined" if declined else "approved",
        auth_code=None if declined else sim.auth_code(),
        decline_code=behaviour.decline_code if declined else None,
        created_at=rfc3339(now),
    )
    disposition, stored = await sim.store.charge(record, mode)
    if disposition is ChargeDisposition.ERROR:
        raise ProtocolError(
            500, "processing_error", "the processor failed; nothing was charged", retryable=False
        )
    if disposition is ChargeDisposition.RETRY_LATER:
        raise ProtocolError(
            503,
            "temporarily_unavailable",
            "the processor is temporarily unavailable; nothing was charged, retry with the "
            "same reference",
            retryable=True,
        )
    if disposition is ChargeDisposition.CONFLICT:
        # Deliberately no "retryable": the reference has a charge, just not this one.
        raise ProtocolError(
            409,
            "reference_conflict",
            "this reference was already used for a charge with different details",
            param="reference",
            retryable=None,
        )
    assert stored is not None
    created = disposition is ChargeDisposition.CREATED
    # Card behaviours apply to the charge that records the reference; a replay of the
    # reference answers at once (it is how a client recovers). Random faults apply to
    # every request, replays included.
    if fault.timeout or (created and action is cards.Action.SLOW_ANSWER):
        await asyncio.sleep(sim.slow_card_delay_s)
    if fault.drop or (created and action is cards.Action.DROP):
        return _DroppedResponse()
    return _answer(charge_body(stored), replayed=not created)


async def get_charge(request: Request) -> Response:
    record = await _sim(request).store.get_charge(request.path_params["reference"])
    if record is None:
        raise ProtocolError(404, "charge_not_found", "no charge was recorded with this reference")
    body = charge_body(record)
    body["amountRefunded"] = record.amount_refunded
    return JSONResponse(body)


async def list_charges(request: Request) -> Response:
    intent = request.query_params.get("paymentIntentId")
    merchant = request.query_params.get("merchantId")
    if not intent and not merchant:
        raise ProtocolError(
            400,
            "parameter_missing",
            "paymentIntentId or merchantId is required",
            param="paymentIntentId",
        )
    records = await _sim(request).store.list_charges(
        payment_intent_id=intent or None, merchant_id=merchant or None
    )
    return JSONResponse({"data": [charge_summary(r) for r in records]})


# --- refunds ------------------------------------------------------------------------------


async def post_refund(request: Request) -> Response:
    sim = _sim(request)
    refund = parse_refund(parse_json(await _read_body(request)))
    disposition, stored, charge = await sim.store.refund(
        refund.reference, refund.charge_reference, refund.amount, rfc3339(_utcnow())
    )
    if disposition in (RefundDisposition.CREATED, RefundDisposition.EXISTING):
        assert stored is not None
        return _answer(refund_body(stored), replayed=disposition is RefundDisposition.EXISTING)
    if disposition is RefundDisposition.CONFLICT:
        raise ProtocolError(
            409,
            "reference_conflict",
            "this reference was already used for a refund with different details",
            param="reference",
            retryable=None,
        )
    if disposition is RefundDisposition.CHARGE_NOT_FOUND:
        raise ProtocolError(
            404,
            "charge_not_found",
            "no charge was recorded with this chargeReference",
            param="chargeReference",
        )
    assert charge is not None
    if disposition is RefundDisposition.NOT_REFUNDABLE:
        raise ProtocolError(
            422,
            "charge_not_refundable",
            f"only approved charges can be refunded (this charge is {charge.status})",
            param="chargeReference",
        )
    remaining = charge.amount - charge.amount_refunded
    raise ProtocolError(
        422,
        "amount_exceeds_remaining",
        f"refund amount exceeds what remains of the charge ({remaining})",
        param="amount",
    )


async def get_refund(request: Request) -> Response:
    record = await _sim(request).store.get_refund(request.path_params["reference"])
    if record is None:
        raise ProtocolError(404, "refund_not_found", "no refund was recorded with this reference")
    return JSONResponse(refund_body(record))


# --- settlement, faults, health -----------------------------------------------------------


async def get_settlement(request: Request) -> Response:
    day = parse_date(request.query_params.get("date"))
    charges, refunds = await _sim(request).store.settlement(day)
    return JSONResponse(settlement_body(day, charges, refunds))


async def get_faults(request: Request) -> Response:
    return JSONResponse(_sim(request).faults.config.to_json())


async def post_faults(request: Request) -> Response:
    sim = _sim(request)
    data = parse_json(await _read_body(request))
    try:
        config = FaultConfig.from_json(data)
    except FaultError as exc:
        raise ProtocolError(400, "parameter_invalid", str(exc), param=exc.param) from None
    sim.faults.config = config
    return JSONResponse(config.to_json())


async def delete_faults(request: Request) -> Response:
    config = _sim(request).faults.config = FaultConfig()
    return JSONResponse(config.to_json())


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# --- error handlers -----------------------------------------------------------------------


async def _protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return JSONResponse(
        error_body(exc.code, exc.message, param=exc.param, retryable=exc.retryable),
        status_code=exc.status,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "invalid_request")
    return JSONResponse(
        error_body(code, str(exc.detail), retryable=None),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    # No "retryable": after an unexpected failure the simulator cannot promise that
    # nothing was recorded, so a client must treat the outcome as unknown.
    return JSONResponse(
        error_body("internal_error", "internal simulator error", retryable=None), status_code=500
    )


def create_app(
    store_path: str | pathlib.Path,
    *,
    slow_card_delay_s: float = 30.0,
    seed: int | None = None,
) -> Starlette:
    """Build the simulator app. ``seed`` (else ``PAYGATE_SIMULATOR_SEED``) seeds faults and
    auth codes, for reproducible runs."""
    if slow_card_delay_s < 0:
        raise ValueError("slow_card_delay_s must be >= 0")
    if seed is None and os.environ.get(SEED_ENV):
        seed = int(os.environ[SEED_ENV])
    rng = random.Random(seed)
    simulator = Simulator(
        store=Store(store_path),
        faults=FaultInjector(rng),
        rng=rng,
        slow_card_delay_s=slow_card_delay_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        simulator.store.open()
        try:
            yield
        finally:
            await simulator.store.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/charges", post_charge, methods=["POST"]),
        Route("/v1/charges", list_charges, methods=["GET"]),
        Route("/v1/charges/{reference}", get_charge, methods=["GET"]),
        Route("/v1/refunds", post_refund, methods=["POST"]),
        Route("/v1/refunds/{reference}", get_refund, methods=["GET"]),
        Route("/v1/settlements", get_settlement, methods=["GET"]),
        Route("/v1/_faults", get_faults, methods=["GET"]),
        Route("/v1/_faults", post_faults, methods=["POST"]),
        Route("/v1/_faults", delete_faults, methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ProtocolError: _protocol_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.simulator = simulator
    install_log_filter()
    return app
