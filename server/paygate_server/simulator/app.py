"""The simulator's Starlette application: routes, the charge and refund flows, faults and
the clock (captures and voids: ``holds.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import os
import pathlib
import random
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import cards
from .clock import SimClock
from .context import (
    ConnectionDropped,
    DroppedResponse,
    JSONResponse,
    Simulator,
    answer,
    charge_not_found,
    install_log_filter,
    processing_error,
    read_body,
    reference_conflict,
    sim,
)
from .faults import FaultConfig, FaultError, FaultInjector
from .holds import get_capture, get_void, post_capture, post_void
from .protocol import (
    ProtocolError,
    charge_body,
    charge_state,
    charge_summary,
    error_body,
    parse_amount_input,
    parse_charge,
    parse_date,
    parse_json,
    refund_body,
    rfc3339,
    settlement_body,
)
from .store import ChargeDisposition, ChargeMode, ChargeRecord, RefundDisposition, Store

__all__ = ["ConnectionDropped", "SEED_ENV", "Simulator", "create_app", "install_log_filter", "seed_from_env"]

SEED_ENV = "PAYGATE_SIMULATOR_SEED"
# How far one POST /v1/_clock may move the clock (ten years).
MAX_CLOCK_ADVANCE_S = 10 * 365 * 24 * 3600


# --- charges ------------------------------------------------------------------------------


async def post_charge(request: Request) -> Response:
    simulator = sim(request)
    charge = parse_charge(parse_json(await read_body(request)))
    fault = await simulator.draw_faults()
    now = simulator.clock.now()
    behaviour = cards.evaluate(charge.digits, charge.exp_month, charge.exp_year, now.date())
    if behaviour.delay_s:
        # Processing time (card 1042): the charge is recorded when it is over.
        await asyncio.sleep(behaviour.delay_s)
        now = simulator.clock.now()
    action = behaviour.action
    if fault.error or action is cards.Action.ERROR:
        mode = ChargeMode.ERROR_IF_NEW
    elif action is cards.Action.RETRY_FIRST:
        mode = ChargeMode.RETRY_FIRST
    else:
        mode = ChargeMode.RECORD
    declined = action is cards.Action.DECLINE
    # An approved authorization holds its amount for the TTL in force now.
    expires_at = None
    if not charge.capture and not declined:
        ttl = _dt.timedelta(seconds=simulator.faults.config.authorization_ttl_s)
        expires_at = rfc3339(now + ttl)
    record = ChargeRecord(
        reference=charge.reference,
        payment_intent_id=charge.payment_intent_id,
        merchant_id=charge.merchant_id,
        amount=charge.amount,
        currency=charge.currency,
        card_brand=cards.brand_of(charge.digits),
        card_last4=charge.digits[-4:],
        status="declined" if declined else "approved",
        auth_code=None if declined else simulator.auth_code(),
        decline_code=behaviour.decline_code if declined else None,
        created_at=rfc3339(now),
        capture=charge.capture,
        expires_at=expires_at,
    )
    disposition, stored = await simulator.store.charge(record, mode)
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
        raise reference_conflict("charge")
    assert stored is not None
    created = disposition is ChargeDisposition.CREATED
    # Card behaviours apply to the charge that records the reference; a replay of the
    # reference answers at once (it is how a client recovers). Random faults apply to
    # every request, replays included.
    if fault.timeout or (created and action is cards.Action.SLOW_ANSWER):
        await asyncio.sleep(simulator.slow_card_delay_s)
    if fault.drop or (created and action is cards.Action.DROP):
        return DroppedResponse()
    return answer(charge_body(stored), replayed=not created)


async def get_charge(request: Request) -> Response:
    simulator = sim(request)
    record = await simulator.store.get_charge(request.path_params["reference"])
    if record is None:
        raise ProtocolError(404, "charge_not_found", "no charge was recorded with this reference")
    # The first answer, plus where the charge stands now (captured, refunded, voided...).
    return JSONResponse({**charge_body(record), **charge_state(record, simulator.now())})


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
    simulator = sim(request)
    listed = await simulator.store.list_charges(
        payment_intent_id=intent or None, merchant_id=merchant or None
    )
    now = simulator.now()
    return JSONResponse({"data": [charge_summary(c, ops, now) for c, ops in listed]})


# --- refunds ------------------------------------------------------------------------------


async def post_refund(request: Request) -> Response:
    simulator = sim(request)
    refund = parse_amount_input(parse_json(await read_body(request)))
    fault = await simulator.draw_faults()
    disposition, stored, charge = await simulator.store.refund(
        refund.reference,
        refund.charge_reference,
        refund.amount,
        simulator.now(),
        error_if_new=fault.error,
    )
    if disposition in (RefundDisposition.CREATED, RefundDisposition.EXISTING):
        assert stored is not None
        return await simulator.deliver(
            fault, refund_body(stored), replayed=disposition is RefundDisposition.EXISTING
        )
    if disposition is RefundDisposition.ERROR:
        raise processing_error()
    if disposition is RefundDisposition.CONFLICT:
        raise reference_conflict("refund")
    if disposition is RefundDisposition.CHARGE_NOT_FOUND:
        raise charge_not_found()
    assert charge is not None
    if disposition is RefundDisposition.NOT_REFUNDABLE:
        raise ProtocolError(
            422,
            "charge_not_refundable",
            "only what was captured can be refunded (this charge is "
            f"{charge.status}, {charge.captured_amount} captured)",
            param="chargeReference",
        )
    remaining = charge.captured_amount - charge.amount_refunded
    raise ProtocolError(
        422,
        "amount_exceeds_remaining",
        f"refund amount exceeds what remains of the charge ({remaining})",
        param="amount",
    )


async def get_refund(request: Request) -> Response:
    record = await sim(request).store.get_refund(request.path_params["reference"])
    if record is None:
        raise ProtocolError(404, "refund_not_found", "no refund was recorded with this reference")
    return JSONResponse(refund_body(record))


# --- settlement, faults, health -----------------------------------------------------------


async def get_settlement(request: Request) -> Response:
    day = parse_date(request.query_params.get("date"))
    return JSONResponse(settlement_body(day, await sim(request).store.settlement(day)))


async def get_faults(request: Request) -> Response:
    return JSONResponse(sim(request).faults.config.to_json())


async def post_faults(request: Request) -> Response:
    simulator = sim(request)
    data = parse_json(await read_body(request))
    try:
        config = FaultConfig.from_json(data)
    except FaultError as exc:
        raise ProtocolError(400, "parameter_invalid", str(exc), param=exc.param) from None
    simulator.faults.config = config
    return JSONResponse(config.to_json())


async def delete_faults(request: Request) -> Response:
    config = sim(request).faults.config = FaultConfig()
    return JSONResponse(config.to_json())


def _clock_body(simulator: Simulator) -> dict[str, object]:
    return {"now": simulator.now(), "offsetS": simulator.clock.offset_us / 1_000_000}


async def get_clock(request: Request) -> Response:
    return JSONResponse(_clock_body(sim(request)))


async def post_clock(request: Request) -> Response:
    """Move the simulator's clock forward (``{"advanceS": N}``), durably: how a test makes
    a hold expire without waiting. Never backwards, so no record is from the future."""
    simulator = sim(request)
    data = parse_json(await read_body(request))
    advance = data.get("advanceS")
    if advance is None:
        raise ProtocolError(400, "parameter_missing", "advanceS is required", param="advanceS")
    if (
        isinstance(advance, bool)
        or not isinstance(advance, (int, float))
        or not 0 <= advance <= MAX_CLOCK_ADVANCE_S
    ):
        raise ProtocolError(
            400,
            "parameter_invalid",
            f"advanceS must be a number of seconds between 0 and {MAX_CLOCK_ADVANCE_S}",
            param="advanceS",
        )
    await simulator.store.advance_clock(round(advance * 1_000_000))
    return JSONResponse(_clock_body(simulator))


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


def seed_from_env(text: str) -> int:
    """``PAYGATE_SIMULATOR_SEED``: ASCII digits (once, int()'s ValueError for "x" was a start-up
    traceback from ``python -m paygate_server.simulator``; "٣" was read as 3)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 30):
        raise ValueError(f"{SEED_ENV}: must be a whole number, 0 or more")
    return int(text)


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
        seed = seed_from_env(os.environ[SEED_ENV])
    rng = random.Random(seed)
    store = Store(store_path)
    simulator = Simulator(
        store=store,
        faults=FaultInjector(rng),
        rng=rng,
        slow_card_delay_s=slow_card_delay_s,
        clock=SimClock(store),
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
        Route("/v1/captures", post_capture, methods=["POST"]),
        Route("/v1/captures/{reference}", get_capture, methods=["GET"]),
        Route("/v1/voids", post_void, methods=["POST"]),
        Route("/v1/voids/{reference}", get_void, methods=["GET"]),
        Route("/v1/settlements", get_settlement, methods=["GET"]),
        Route("/v1/_faults", get_faults, methods=["GET"]),
        Route("/v1/_faults", post_faults, methods=["POST"]),
        Route("/v1/_faults", delete_faults, methods=["DELETE"]),
        Route("/v1/_clock", get_clock, methods=["GET"]),
        Route("/v1/_clock", post_clock, methods=["POST"]),
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
