"""Captures and voids of authorizations (``POST /v1/captures``, ``POST /v1/voids``).

Both are idempotent by their own ``reference``, and both record their result, refusals
included: a client that lost the answer asks ``GET /v1/captures/{reference}`` and learns
what happened, a refusal as much as a capture. A request that names no hold (an unknown
``chargeReference``, a declined charge, a capture of more than was authorized) is a
client error instead, and records nothing. Deciding and recording happen in one store
operation on the single writer, so a capture racing a void or another capture of the same
authorization sees the other's effect: exactly one of them takes the hold.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .context import (
    JSONResponse,
    charge_not_found,
    processing_error,
    read_body,
    reference_conflict,
    sim,
)
from .protocol import (
    ProtocolError,
    capture_body,
    parse_amount_input,
    parse_json,
    parse_void,
    void_body,
)
from .records import ChargeRecord, HoldDisposition

__all__ = ["get_capture", "get_void", "post_capture", "post_void"]


def _refusal(
    disposition: HoldDisposition, charge: ChargeRecord | None, operation: str
) -> ProtocolError:
    """The error for a request the store did not record (anything but CREATED/EXISTING)."""
    if disposition is HoldDisposition.CONFLICT:
        return reference_conflict(operation)
    if disposition is HoldDisposition.ERROR:
        return processing_error()
    if disposition is HoldDisposition.CHARGE_NOT_FOUND:
        return charge_not_found()
    assert charge is not None
    if disposition is HoldDisposition.NOT_AUTHORIZED:
        return ProtocolError(
            422,
            f"charge_not_{'capturable' if operation == 'capture' else 'voidable'}",
            f"only approved charges hold an amount (this charge is {charge.status})",
            param="chargeReference",
        )
    assert disposition is HoldDisposition.EXCEEDS_AUTHORIZED
    return ProtocolError(
        400,
        "parameter_invalid",
        f"amount must be at most the authorized amount ({charge.amount})",
        param="amount",
    )


async def post_capture(request: Request) -> Response:
    simulator = sim(request)
    capture = parse_amount_input(parse_json(await read_body(request)))
    fault = await simulator.draw_faults()
    disposition, stored, charge = await simulator.store.capture(
        capture.reference,
        capture.charge_reference,
        capture.amount,
        simulator.now(),
        error_if_new=fault.error,
    )
    if disposition not in (HoldDisposition.CREATED, HoldDisposition.EXISTING):
        raise _refusal(disposition, charge, "capture")
    assert stored is not None
    return await simulator.deliver(
        fault, capture_body(stored), replayed=disposition is HoldDisposition.EXISTING
    )


async def post_void(request: Request) -> Response:
    simulator = sim(request)
    void = parse_void(parse_json(await read_body(request)))
    fault = await simulator.draw_faults()
    disposition, stored, charge = await simulator.store.void(
        void.reference, void.charge_reference, simulator.now(), error_if_new=fault.error
    )
    if disposition not in (HoldDisposition.CREATED, HoldDisposition.EXISTING):
        raise _refusal(disposition, charge, "void")
    assert stored is not None
    return await simulator.deliver(
        fault, void_body(stored), replayed=disposition is HoldDisposition.EXISTING
    )


async def get_capture(request: Request) -> Response:
    record = await sim(request).store.get_capture(request.path_params["reference"])
    if record is None:
        raise ProtocolError(
            404, "capture_not_found", "no capture was recorded with this reference"
        )
    return JSONResponse(capture_body(record))


async def get_void(request: Request) -> Response:
    record = await sim(request).store.get_void(request.path_params["reference"])
    if record is None:
        raise ProtocolError(404, "void_not_found", "no void was recorded with this reference")
    return JSONResponse(void_body(record))
