"""Hold expiry (``authorizationTtlS``) on the simulator's clock (``POST /v1/_clock``), each
on a private simulator process: the clock is moved, never waited for."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paygate_server.simulator.testing import (
    SimulatorProcess,
    TestCards,
    advance_clock,
    capture_payload,
    charge_payload,
    list_charges,
    set_faults,
    void_payload,
)


@pytest.fixture
def process(simulator_factory: Callable[..., SimulatorProcess]) -> SimulatorProcess:
    return simulator_factory("expiry")


@pytest.fixture
async def sim(process: SimulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        yield c


async def _authorize(sim: httpx.AsyncClient, amount: int = 1000) -> dict[str, Any]:
    body = (await sim.post("/v1/charges", json=charge_payload(amount=amount, capture=False))).json()
    assert body["status"] == "approved"
    return body  # type: ignore[no-any-return]


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_hold_expires_after_its_ttl_on_the_simulator_clock(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    set_faults(process.base_url, authorizationTtlS=60)
    auth = await _authorize(sim)
    assert _at(auth["expiresAt"]) - _at(auth["createdAt"]) == dt.timedelta(seconds=60)
    other = await _authorize(sim)
    # Just before the end of the hold it is still capturable.
    advance_clock(process.base_url, 50)
    early = await sim.post("/v1/captures", json=capture_payload(other["reference"], 1000))
    assert early.json()["status"] == "captured"
    [row] = list_charges(process.base_url, auth["paymentIntentId"])
    assert row["expired"] is False
    advance_clock(process.base_url, 10.5)
    [row] = list_charges(process.base_url, auth["paymentIntentId"])
    assert (row["expired"], row["captured"], row["voided"]) == (True, False, False)
    payload = capture_payload(auth["reference"], 1000)
    late = await sim.post("/v1/captures", json=payload)
    assert late.status_code == 200
    assert (late.json()["status"], late.json()["declineCode"]) == ("refused", "authorization_expired")
    # Recorded: the lookup and a replay say the same.
    assert (await sim.get(f"/v1/captures/{payload['reference']}")).json() == late.json()
    assert (await sim.post("/v1/captures", json=payload)).content == late.content
    # The capture's timestamp is on the simulator's clock, a minute ahead of the wall's.
    assert _at(late.json()["createdAt"]) >= _at(auth["expiresAt"])
    # Voiding an expired hold is fine: nothing to release, and it is recorded as voided.
    void = await sim.post("/v1/voids", json=void_payload(auth["reference"]))
    assert (void.json()["status"], void.json()["declineCode"]) == ("voided", None)
    [row] = list_charges(process.base_url, auth["paymentIntentId"])
    assert (row["voided"], row["expired"], row["captured"]) == (True, False, False)
    # Nothing of it settles.
    report = (await sim.get("/v1/settlements", params={"date": late.json()["createdAt"][:10]})).json()
    assert auth["reference"] not in {c["chargeReference"] for c in report["captures"]}


async def test_the_ttl_in_force_at_authorization_fixes_the_hold(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    set_faults(process.base_url, authorizationTtlS=3600)
    auth = await _authorize(sim)
    # A shorter TTL later does not shorten a hold already granted...
    set_faults(process.base_url, authorizationTtlS=0)
    advance_clock(process.base_url, 1800)
    captured = await sim.post("/v1/captures", json=capture_payload(auth["reference"], 400))
    assert captured.json()["status"] == "captured"
    # ...and a TTL of 0 means a new hold that is over at once.
    instant = await _authorize(sim)
    assert instant["expiresAt"] == instant["createdAt"]
    refused = await sim.post("/v1/captures", json=capture_payload(instant["reference"], 1))
    assert refused.json()["declineCode"] == "authorization_expired"


async def test_a_captured_or_voided_hold_never_expires(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    set_faults(process.base_url, authorizationTtlS=10)
    captured = await _authorize(sim)
    voided = await _authorize(sim)
    await sim.post("/v1/captures", json=capture_payload(captured["reference"], 1000))
    await sim.post("/v1/voids", json=void_payload(voided["reference"]))
    advance_clock(process.base_url, 3600)
    [row] = list_charges(process.base_url, captured["paymentIntentId"])
    assert (row["captured"], row["expired"]) == (True, False)
    [row] = list_charges(process.base_url, voided["paymentIntentId"])
    assert (row["voided"], row["expired"]) == (True, False)
    # The capture stands: refunds still work after the hold's end.
    refund = {"reference": "re_after_ttl", "chargeReference": captured["reference"], "amount": 10}
    assert (await sim.post("/v1/refunds", json=refund)).status_code == 200


@pytest.mark.parametrize("ttl", [-1, "60", True, None, 366 * 24 * 3600])
async def test_authorization_ttl_is_validated(sim: httpx.AsyncClient, ttl: object) -> None:
    response = await sim.post("/v1/_faults", json={"authorizationTtlS": ttl})
    assert response.status_code == 400
    assert response.json()["param"] == "authorizationTtlS"
    assert (await sim.get("/v1/_faults")).json()["authorizationTtlS"] == 7 * 24 * 3600


async def test_faults_post_keeps_the_ttl_it_is_given_and_resets_it_otherwise(
    sim: httpx.AsyncClient,
) -> None:
    assert (await sim.post("/v1/_faults", json={"authorizationTtlS": 2.5})).json()[
        "authorizationTtlS"
    ] == 2.5
    # A body replaces the whole configuration: the TTL left out is the default again.
    assert (await sim.post("/v1/_faults", json={"errorRate": 0})).json()[
        "authorizationTtlS"
    ] == 7 * 24 * 3600


async def test_clock_moves_forward_only_and_is_validated(sim: httpx.AsyncClient) -> None:
    before = (await sim.get("/v1/_clock")).json()
    assert before["offsetS"] == 0
    after = (await sim.post("/v1/_clock", json={"advanceS": 86400})).json()
    assert after["offsetS"] == 86400
    assert _at(after["now"]) - _at(before["now"]) >= dt.timedelta(days=1)
    for body in ({}, {"advanceS": -1}, {"advanceS": "5"}, {"advanceS": True}, {"advanceS": 1e12}):
        response = await sim.post("/v1/_clock", json=body)
        assert response.status_code == 400 and response.json()["param"] == "advanceS"
    assert (await sim.get("/v1/_clock")).json()["offsetS"] == 86400
    # Records are stamped on it: a charge made now is dated a day ahead.
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    assert _at(charge["createdAt"]) >= _at(after["now"])


async def test_the_clock_and_an_expiry_survive_a_restart(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    set_faults(process.base_url, authorizationTtlS=60)
    auth = await _authorize(sim)
    advance_clock(process.base_url, 120)
    process.kill()
    process.start()  # faults are reset by a restart; the clock and the hold's end are not
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as again:
        assert (await again.get("/v1/_clock")).json()["offsetS"] == 120
        assert (await again.get("/v1/_faults")).json()["authorizationTtlS"] == 7 * 24 * 3600
        refused = await again.post("/v1/captures", json=capture_payload(auth["reference"], 1000))
        assert refused.json()["declineCode"] == "authorization_expired"
