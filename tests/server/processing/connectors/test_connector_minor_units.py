"""Processors' minor units (processing/connectors/minor_units.py), and answers that state
another amount or currency than was sent: the Stripe and Adyen connectors with scripted
answers (real Stripe's fields that localstripe does not have: ``amount_received``,
``amount_capturable``; Adyen's payment answer's ``amount``; Stripe's settlement report,
which localstripe cannot list)."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from paygate_server.currencies import EXPONENTS
from paygate_server.http1client import Response
from paygate_server.processing.connectors import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ConnectorError,
    RefundRequest,
    other_money,
)
from paygate_server.processing.connectors.adyen import AdyenConnector
from paygate_server.processing.connectors.minor_units import (
    ADYEN,
    STRIPE,
    MinorUnits,
    Unrepresentable,
)
from tests.server.processing.connectors.test_connector_adyen import (
    AUTHORISED,
    HMAC_KEY,
    MERCHANT,
    PSP,
)
from tests.server.processing.connectors.test_connector_adyen import CARD as ADYEN_CARD
from tests.server.processing.connectors.test_connector_adyen import REF as ADYEN_REF
from tests.server.processing.connectors.test_connector_adyen import Script as AdyenScript
from tests.server.processing.connectors.test_connector_stripe_requests import (
    CARD,
    GW_PI,
    REF,
    Sent,
    _txn,
    connector,
    ok,
    pi,
    stripe_like,
)

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the tables readable

# (currency, the gateway's amount, Stripe's, Adyen's)
UNITS = [
    ("USD", 1999, 1999, 1999),
    ("JPY", 500, 500, 500),
    ("ISK", 500, 50000, 50000),
    ("UGX", 3000, 300000, 3000),
    ("MGA", 1000, 10, 1000),
    ("CLP", 990, 990, 99000),
    ("IDR", 1500000, 1500000, 15000),
    ("CVE", 1000, 1000, 10),
    ("KWD", 1250, 1250, 1250),
    ("TND", 5000, 5000, 5000),
    ("HUF", 1050, 1050, 1050),
]


@pytest.mark.parametrize(("currency", "amount", "at_stripe", "at_adyen"), UNITS, ids=[u[0] for u in UNITS])
def test_each_processors_units_there_and_back(currency: str, amount: int, at_stripe: int, at_adyen: int) -> None:
    assert STRIPE.to_processor(amount, currency) == at_stripe
    assert STRIPE.from_processor(at_stripe, currency) == amount
    assert ADYEN.to_processor(amount, currency) == at_adyen
    assert ADYEN.from_processor(at_adyen, currency) == amount


@pytest.mark.parametrize(("units", "currency", "amount"), [
    (STRIPE, "KWD", 1235), (STRIPE, "BHD", 1), (STRIPE, "JOD", 99999999), (STRIPE, "MGA", 1050),
    (STRIPE, "ISK", 1_000_000), (STRIPE, "UGX", 99999999), (ADYEN, "IDR", 1050), (ADYEN, "CVE", 1),
    (STRIPE, "XXX", 1), (ADYEN, "usd", 1),
])
def test_amounts_a_processor_cannot_take(units: MinorUnits, currency: str, amount: int) -> None:
    with pytest.raises(Unrepresentable):
        units.to_processor(amount, currency)


@pytest.mark.parametrize(("units", "currency", "stated"), [
    (STRIPE, "ISK", 12345), (STRIPE, "UGX", 1), (ADYEN, "CLP", 99950), (ADYEN, "ISK", 5)])
def test_a_stated_amount_that_is_no_whole_number_of_the_gateways_units(units: MinorUnits, currency: str,
                                                                       stated: int) -> None:
    with pytest.raises(Unrepresentable):
        units.from_processor(stated, currency)


def test_every_currency_goes_there_and_back_exactly() -> None:
    """Every currency the gateway takes, at 1, 10, 100 minor units and the largest amount:
    what a processor is sent comes back as the same amount, or is refused; never rounded."""
    for currency in EXPONENTS:
        for amount in (1, 10, 100, 99_999_999):
            for units in (STRIPE, ADYEN):
                try:
                    sent = units.to_processor(amount, currency)
                except Unrepresentable:
                    continue
                assert units.from_processor(sent, currency) == amount, (currency, amount, units.processor)


# -- Stripe's answers ------------------------------------------------------------------------------------------------

def _charge(amount: int = 1999, currency: str = "EUR", capture: bool = True) -> ChargeRequest:
    return ChargeRequest(REF, "pi_gw", "mer_1", amount, currency, CARD, capture=capture)


@pytest.mark.parametrize(("answer", "outcome"), [
    (pi("succeeded", latest_charge="ch_1", amount=1999, amount_received=1999, currency="eur"), O.APPROVED),
    (pi("succeeded", latest_charge="ch_1", amount=1999, amount_received=1000, currency="eur"), O.UNKNOWN),
    (pi("succeeded", latest_charge="ch_1", amount=1999, currency="usd"), O.UNKNOWN),
    (pi("succeeded", latest_charge="ch_1", amount=1998, currency="eur"), O.UNKNOWN),
])
async def test_a_confirm_answered_for_other_money_is_unknown(answer: dict[str, object], outcome: ChargeOutcome) -> None:
    stripe, _ = connector(stripe_like(confirm=ok(answer)))
    assert (await stripe.charge(_charge())).outcome is outcome


async def test_a_partial_authorization_is_unknown() -> None:
    held = pi("requires_capture", capture_method="manual", latest_charge="ch_9", amount=500, amount_capturable=400,
              currency="usd")
    stripe, _ = connector(stripe_like(confirm=ok(held)))
    result = await stripe.charge(_charge(500, "USD", capture=False))
    assert result.outcome is O.UNKNOWN and "not the 5.00 USD sent" in (result.message or "")


async def test_an_isk_charge_is_sent_and_read_in_stripes_units() -> None:
    paid = pi("succeeded", latest_charge="ch_1", amount=50000, amount_received=50000, currency="isk")
    stripe, script = connector(stripe_like(confirm=ok(paid)))
    result = await stripe.charge(_charge(500, "ISK"))
    assert (result.outcome, result.amount, result.currency) == (O.APPROVED, 500, "ISK")
    assert script.sent[1].field("amount") == "50000"


async def test_a_capture_answered_for_less_is_unknown() -> None:
    captured = ok(pi("succeeded", capture_method="manual", amount=5000, amount_received=900, currency="eur"))
    stripe, script = connector(stripe_like(**{"POST /v1/payment_intents/pi_1/capture": captured}))
    result = await stripe.capture(CaptureRequest("cap_1", REF, 1000, "EUR", "pi_1"))
    assert result.outcome is O.UNKNOWN
    assert script.sent[-1].field("amount_to_capture") == "1000"


async def test_a_refund_answered_for_another_amount_is_unknown() -> None:
    refunded = ok({"id": "re_1", "object": "refund", "status": "succeeded", "amount": 100, "currency": "eur"})
    stripe, _ = connector(stripe_like(**{"POST /v1/refunds": refunded}))
    result = await stripe.refund(RefundRequest("re_ref", REF, 250, "EUR", "pi_1"))
    assert result.outcome is O.UNKNOWN


async def test_a_lookup_states_the_money_in_the_gateways_units() -> None:
    found = ok(pi("succeeded", latest_charge="ch_1", amount=50000, amount_received=50000, currency="isk"))
    stripe, _ = connector(stripe_like(**{"GET /v1/payment_intents/pi_1": found}))
    result = await stripe.lookup(REF, processor_id="pi_1")
    assert (result.outcome, result.amount, result.currency) == (O.APPROVED, 500, "ISK")


async def test_a_settlement_report_in_the_gateways_units() -> None:
    page = {"data": [
        _txn("txn_1", "charge", {"id": "ch_a", "amount": 50000, "currency": "isk", "payment_intent": GW_PI}),
        _txn("txn_2", "charge", {"id": "ch_b", "amount": 10, "currency": "mga", "payment_intent": GW_PI}),
    ], "has_more": False}
    stripe, _ = connector(lambda sent: ok(page))
    records = await stripe.settlement_report(dt.date(2026, 3, 4))
    assert [(r.amount, r.currency) for r in records] == [(500, "ISK"), (1000, "MGA")]


async def test_a_settlement_amount_that_is_no_whole_krona_is_refused_not_rounded() -> None:
    page = {"data": [_txn("txn_1", "charge", {"id": "ch_a", "amount": 50050, "currency": "isk",
                                               "payment_intent": GW_PI})], "has_more": False}

    def handle(sent: Sent) -> Response:
        return ok(page)

    stripe, _ = connector(handle)
    with pytest.raises(ConnectorError):
        await stripe.settlement_report(dt.date(2026, 3, 4))


# -- Adyen's answers -------------------------------------------------------------------------------------------------

def _adyen(*answers: dict[str, object]) -> tuple[AdyenConnector, AdyenScript]:
    script = AdyenScript([Response(200, orjson.dumps(a), False) for a in answers])
    return AdyenConnector("https://checkout-test.adyen.com", MERCHANT, "test-api-key", HMAC_KEY,
                          transport=script), script


async def test_adyen_is_sent_isk_in_its_units_and_an_answer_for_another_amount_is_unknown() -> None:
    connector_, script = _adyen({**AUTHORISED, "amount": {"currency": "ISK", "value": 50000}},
                                {**AUTHORISED, "amount": {"currency": "ISK", "value": 40000}})
    isk = ChargeRequest(ADYEN_REF, "pi_1", "mer_1", 500, "ISK", ADYEN_CARD)
    assert (await connector_.charge(isk)).outcome is O.APPROVED
    assert script.sent[0].body["amount"] == {"value": 50000, "currency": "ISK"}
    partial = await connector_.charge(isk)  # Adyen says it authorised 400 kr of the 500
    assert (partial.outcome, partial.processor_id) == (O.UNKNOWN, PSP)


async def test_adyen_is_sent_nothing_for_an_amount_it_cannot_take() -> None:
    connector_, script = _adyen()
    idr = ChargeRequest(ADYEN_REF, "pi_1", "mer_1", 1050, "IDR", ADYEN_CARD)  # Rp 10.50: Adyen takes whole rupiah
    assert (await connector_.charge(idr)).outcome is O.FAILED
    assert (await connector_.capture(CaptureRequest("cap_1", REF, 1050, "IDR", PSP))).outcome is O.FAILED
    assert (await connector_.refund(RefundRequest("re_1", REF, 1050, "IDR", PSP))).outcome is O.DECLINED
    assert script.sent == []


async def test_a_hold_gone_is_still_read_as_such_whatever_stripe_received() -> None:
    """Real Stripe's canceled intent says amount_received 0: that is no capture of other
    money, but the capture's refusal (the hold expired)."""
    gone = ok(pi("canceled", capture_method="manual", cancellation_reason="automatic", amount=5000,
                 amount_received=0, currency="eur"))
    stripe, _ = connector(stripe_like(**{"GET /v1/payment_intents/pi_1": gone}))
    result = other_money(await stripe.lookup("cap_1", "capture", processor_id="pi_1"), 4000, "EUR")
    assert (result.outcome, result.decline_code) == (O.DECLINED, "authorization_expired")
