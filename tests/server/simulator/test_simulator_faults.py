"""Fault injection (POST /v1/_faults), each on a private simulator process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess, TestCards, charge_payload


@pytest.fixture
async def sim(
    simulator_factory: Callable[..., SimulatorProcess],
) -> AsyncIterator[httpx.AsyncClient]:
    process = simulator_factory("faults")
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        yield c


async def _set_faults(client: httpx.AsyncClient, **faults: float) -> None:
    response = await client.post("/v1/_faults", json=faults)
    assert response.status_code == 200, response.text


async def test_faults_round_trip_and_reset(sim: httpx.AsyncClient) -> None:
    assert (await sim.get("/v1/_faults")).json() == {
        "latencyMs": 0,
        "jitterMs": 0,
        "errorRate": 0.0,
        "timeoutRate": 0.0,
        "dropResponseRate": 0.0,
        "authorizationTtlS": 7 * 24 * 3600,
    }
    await _set_faults(sim, latencyMs=5, jitterMs=2, errorRate=0.25, dropResponseRate=0.5)
    assert (await sim.get("/v1/_faults")).json() == {
        "latencyMs": 5,
        "jitterMs": 2,
        "errorRate": 0.25,
        "timeoutRate": 0.0,
        "dropResponseRate": 0.5,
        "authorizationTtlS": 7 * 24 * 3600,
    }
    # A POST replaces the whole configuration: omitted faults are off.
    await _set_faults(sim, timeoutRate=0.1)
    assert (await sim.get("/v1/_faults")).json()["errorRate"] == 0.0
    assert (await sim.delete("/v1/_faults")).json()["timeoutRate"] == 0.0


@pytest.mark.parametrize(
    "body",
    [
        {"errorRate": 1.5},
        {"errorRate": -0.1},
        {"timeoutRate": "0.5"},
        {"dropResponseRate": True},
        {"latencyMs": -1},
        {"latencyMs": 1.5},
        {"jitterMs": 10**9},
        {"latency": 5},
        [],
    ],
)
async def test_fault_values_are_validated(sim: httpx.AsyncClient, body: object) -> None:
    response = await sim.post("/v1/_faults", json=body)
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert (await sim.get("/v1/_faults")).json()["errorRate"] == 0.0  # unchanged


async def test_error_rate_fails_without_charging(sim: httpx.AsyncClient) -> None:
    await _set_faults(sim, errorRate=1.0)
    payload = charge_payload(TestCards.VISA)
    response = await sim.post("/v1/charges", json=payload)
    assert response.status_code == 500
    assert response.json()["code"] == "processing_error"
    assert response.json()["retryable"] is False
    assert (await sim.get(f"/v1/charges/{payload['reference']}")).status_code == 404
    # Once the fault is gone the same reference charges normally: nothing was taken before.
    await _set_faults(sim)
    assert (await sim.post("/v1/charges", json=payload)).json()["status"] == "approved"


async def test_error_rate_never_denies_a_recorded_charge(sim: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.VISA)
    first = await sim.post("/v1/charges", json=payload)
    await _set_faults(sim, errorRate=1.0)
    # "nothing was charged" would be a lie for a reference that was: replay instead.
    replay = await sim.post("/v1/charges", json=payload)
    assert replay.status_code == 200 and replay.content == first.content


async def test_drop_response_rate_records_then_drops(sim: httpx.AsyncClient) -> None:
    await _set_faults(sim, dropResponseRate=1.0)
    payload = charge_payload(TestCards.VISA)
    with pytest.raises(httpx.RemoteProtocolError):
        await sim.post("/v1/charges", json=payload)
    recorded = await sim.get(f"/v1/charges/{payload['reference']}")
    assert recorded.status_code == 200 and recorded.json()["status"] == "approved"


async def test_timeout_rate_records_then_answers_late(
    sim: httpx.AsyncClient, slow_card_delay_s: float
) -> None:
    await _set_faults(sim, timeoutRate=1.0)
    payload = charge_payload(TestCards.VISA)
    with pytest.raises(httpx.ReadTimeout):
        await sim.post(
            "/v1/charges", json=payload, timeout=httpx.Timeout(5.0, read=slow_card_delay_s / 4)
        )
    recorded = await sim.get(f"/v1/charges/{payload['reference']}")
    assert recorded.status_code == 200 and recorded.json()["status"] == "approved"


async def test_latency_and_jitter(sim: httpx.AsyncClient) -> None:
    started = time.monotonic()
    await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))
    baseline = time.monotonic() - started
    await _set_faults(sim, latencyMs=300, jitterMs=100)
    for _ in range(3):
        started = time.monotonic()
        response = await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert 0.3 <= elapsed < 0.4 + baseline + 1.0
    # Latency applies to charges, not to reads.
    started = time.monotonic()
    await sim.get("/healthz")
    assert time.monotonic() - started < 0.3


async def test_seeded_faults_are_reproducible(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    async def outcomes(name: str) -> list[int]:
        process = simulator_factory(name, seed=1234)
        async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
            await _set_faults(c, errorRate=0.5)
            return [
                (await c.post("/v1/charges", json=charge_payload(TestCards.VISA))).status_code
                for _ in range(40)
            ]

    first = await outcomes("seed-a")
    second = await outcomes("seed-b")
    assert first == second
    assert 200 in first and 500 in first  # the rate really is applied, both ways
