"""SimulatorConnector against the real simulator process, for every test card."""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    RefundRequest,
    SimulatorConnector,
)
from paygate_server.simulator.testing import TestCards

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcome tables readable


@pytest.fixture
async def connector(simulator_url: str) -> AsyncIterator[SimulatorConnector]:
    # A read timeout shorter than the slow-card delay (1 s) but longer than normal answers.
    async with SimulatorConnector(simulator_url, read_timeout=0.5) as c:
        yield c


def _request(number: str, amount: int = 1000, cvc: str | None = "123") -> ChargeRequest:
    return ChargeRequest(
        reference=f"txn_{uuid.uuid4().hex}",
        payment_intent_id=f"pi_{uuid.uuid4().hex}",
        merchant_id="mer_connector",
        amount=amount,
        currency="USD",
        card=CardDetails(number, 12, time.gmtime().tm_year + 2, cvc),
    )


@pytest.mark.parametrize("number", [TestCards.VISA, TestCards.MASTERCARD, TestCards.AMEX])
async def test_approved(connector: SimulatorConnector, number: str) -> None:
    request = _request(number)
    result = await connector.charge(request)
    assert result.outcome is O.APPROVED and result.reference == request.reference
    assert result.auth_code and len(result.auth_code) == 6
    assert await connector.lookup(request.reference) == result


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (TestCards.GENERIC_DECLINE, "generic_decline"),
        (TestCards.INSUFFICIENT_FUNDS, "insufficient_funds"),
        (TestCards.EXPIRED_CARD, "expired_card"),
        (TestCards.INCORRECT_CVC, "incorrect_cvc"),
        ("4242424242424241", "invalid_number"),
    ],
)
async def test_declined(connector: SimulatorConnector, number: str, code: str) -> None:
    request = _request(number)
    result = await connector.charge(request)
    assert result.outcome is O.DECLINED and result.decline_code == code
    assert result.message
    looked_up = await connector.lookup(request.reference)
    assert looked_up.outcome is O.DECLINED and looked_up.decline_code == code


async def test_0119_failed_nothing_charged(connector: SimulatorConnector) -> None:
    request = _request(TestCards.PROCESSING_ERROR)
    assert (await connector.charge(request)).outcome is O.FAILED
    assert (await connector.lookup(request.reference)).outcome is O.NOT_FOUND


async def test_1018_unknown_then_lookup_approved(connector: SimulatorConnector) -> None:
    request = _request(TestCards.SLOW_ANSWER)
    result = await connector.charge(request)
    assert result.outcome is O.UNKNOWN and "timeout" in (result.message or "")
    assert (await connector.lookup(request.reference)).outcome is O.APPROVED


async def test_1026_unknown_then_lookup_approved(connector: SimulatorConnector) -> None:
    request = _request(TestCards.DROPPED_ANSWER)
    assert (await connector.charge(request)).outcome is O.UNKNOWN
    assert (await connector.lookup(request.reference)).outcome is O.APPROVED
    # The same attempt retried: the recorded approval, not a second charge.
    assert (await connector.charge(request)).outcome is O.APPROVED


async def test_1034_retry_then_approved(connector: SimulatorConnector) -> None:
    request = _request(TestCards.RETRY_FIRST)
    assert (await connector.charge(request)).outcome is O.RETRY
    assert (await connector.lookup(request.reference)).outcome is O.NOT_FOUND
    assert (await connector.charge(request)).outcome is O.APPROVED


async def test_1042_needs_a_longer_timeout(simulator_url: str) -> None:
    async with SimulatorConnector(simulator_url, read_timeout=0.5) as impatient:
        assert (await impatient.charge(_request(TestCards.DELAYED_APPROVAL))).outcome is O.UNKNOWN
    async with SimulatorConnector(simulator_url, read_timeout=5.0) as patient:
        started = time.monotonic()
        result = await patient.charge(_request(TestCards.DELAYED_APPROVAL))
    assert result.outcome is O.APPROVED and time.monotonic() - started >= 1.45


async def test_lookup_of_unknown_reference(connector: SimulatorConnector) -> None:
    assert (await connector.lookup("txn_never_sent")).outcome is O.NOT_FOUND


async def test_refunds_and_settlement(connector: SimulatorConnector) -> None:
    request = _request(TestCards.VISA, amount=1000)
    charged = await connector.charge(request)
    assert charged.outcome is O.APPROVED
    partial = RefundRequest(f"re_{uuid.uuid4().hex}", request.reference, 400, "USD")
    assert (await connector.refund(partial)).outcome is O.APPROVED
    assert (await connector.refund(partial)).outcome is O.APPROVED  # idempotent
    too_much = RefundRequest(f"re_{uuid.uuid4().hex}", request.reference, 601, "USD")
    refused = await connector.refund(too_much)
    assert refused.outcome is O.DECLINED and "amount_exceeds_remaining" in (refused.message or "")
    unknown = RefundRequest(f"re_{uuid.uuid4().hex}", "txn_nope", 1, "USD")
    assert (await connector.refund(unknown)).outcome is O.DECLINED

    today = dt.datetime.now(dt.UTC).date()
    records = []
    for day in (today - dt.timedelta(days=1), today):  # in case the charge was before midnight
        records += await connector.settlement_report(day)
    charges = [r for r in records if r.kind == "charge" and r.reference == request.reference]
    refunds = [r for r in records if r.kind == "refund" and r.reference == partial.reference]
    assert len(charges) == 1 and charges[0].amount == 1000
    assert charges[0].payment_intent_id == request.payment_intent_id
    assert len(refunds) == 1 and refunds[0].charge_reference == request.reference
    assert refunds[0].amount == 400


async def test_unreachable_processor_charged_nothing_and_a_lookup_is_unknown() -> None:
    # A port that was just free: nothing listens on it, so no request ever left.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with SimulatorConnector(f"http://127.0.0.1:{port}", connect_timeout=0.5) as c:
        result = await c.charge(_request(TestCards.VISA))
        assert result.outcome is O.FAILED
        assert (await c.lookup(result.reference)).outcome is O.UNKNOWN
