"""Settlement reports: approved charges and succeeded refunds of a UTC day."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess, TestCards, charge_payload


@pytest.fixture
async def fresh(
    simulator_factory: Callable[..., SimulatorProcess],
) -> AsyncIterator[httpx.AsyncClient]:
    # A private simulator, so that the report holds exactly what this test did.
    process = simulator_factory("settlement")
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        yield c


async def test_settlement_lists_the_days_approved_charges_and_refunds(
    fresh: httpx.AsyncClient,
) -> None:
    usd = (await fresh.post("/v1/charges", json=charge_payload(TestCards.VISA, amount=1500))).json()
    eur = (
        await fresh.post(
            "/v1/charges", json=charge_payload(TestCards.MASTERCARD, amount=900, currency="EUR")
        )
    ).json()
    declined = await fresh.post("/v1/charges", json=charge_payload(TestCards.GENERIC_DECLINE))
    errored = await fresh.post("/v1/charges", json=charge_payload(TestCards.PROCESSING_ERROR))
    assert declined.status_code == 200 and errored.status_code == 500
    refund = (
        await fresh.post(
            "/v1/refunds",
            json={"reference": "re_settle_1", "chargeReference": usd["reference"], "amount": 500},
        )
    ).json()

    days = {usd["createdAt"][:10], eur["createdAt"][:10], refund["createdAt"][:10]}
    charges: list[dict] = []
    refunds: list[dict] = []
    totals: dict[str, dict[str, int]] = {}
    for day in sorted(days):  # normally one day, two if the test straddles midnight UTC
        response = await fresh.get("/v1/settlements", params={"date": day})
        assert response.status_code == 200
        report = response.json()
        assert report["date"] == day
        charges += report["charges"]
        refunds += report["refunds"]
        for currency, entry in report["totals"].items():
            bucket = totals.setdefault(currency, dict.fromkeys(entry, 0))
            for key, value in entry.items():
                bucket[key] += value

    assert sorted(c["reference"] for c in charges) == sorted([usd["reference"], eur["reference"]])
    by_ref = {c["reference"]: c for c in charges}
    assert by_ref[usd["reference"]] == {
        "reference": usd["reference"],
        "paymentIntentId": usd["paymentIntentId"],
        "merchantId": usd["merchantId"],
        "amount": 1500,
        "currency": "USD",
        "authCode": usd["authCode"],
        "createdAt": usd["createdAt"],
    }
    assert refunds == [
        {
            "reference": "re_settle_1",
            "chargeReference": usd["reference"],
            "paymentIntentId": usd["paymentIntentId"],
            "merchantId": usd["merchantId"],
            "amount": 500,
            "currency": "USD",
            "createdAt": refund["createdAt"],
        }
    ]
    assert totals["USD"] == {
        "chargeCount": 1,
        "chargedAmount": 1500,
        "captureCount": 0,
        "capturedAmount": 0,
        "refundCount": 1,
        "refundedAmount": 500,
        "netAmount": 1000,
    }
    assert totals["EUR"]["chargedAmount"] == 900 and totals["EUR"]["netAmount"] == 900


async def test_settlement_of_another_day_is_empty(fresh: httpx.AsyncClient) -> None:
    charge = (await fresh.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    day = dt.date.fromisoformat(charge["createdAt"][:10])
    for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
        report = (await fresh.get("/v1/settlements", params={"date": other.isoformat()})).json()
        assert report == {"date": other.isoformat(), "charges": [], "captures": [], "refunds": [], "totals": {}}


# "9999-12-31": the last day has no next day's start (once an OverflowError, a 500);
# "٢٠٢٤-01-01": \d took Arabic-Indic digits.
@pytest.mark.parametrize("value", ["", "2024-13-01", "2024-02-30", "20240101", "yesterday", "9999-12-31",
                                   "\u0662\u0660\u0662\u0664-01-01"])
async def test_settlement_date_is_validated(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/v1/settlements", params={"date": value})
    assert response.status_code == 400
    assert response.json()["code"] in ("parameter_invalid", "parameter_missing")


async def test_settlement_date_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/settlements")
    assert response.status_code == 400 and response.json()["param"] == "date"
