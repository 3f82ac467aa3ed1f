"""Fault injection (POST /v1/_faults), each on a private simulator process."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from paygate_server.simulator.testing import (
    SimulatorProcess,
    TestCards,
    capture_payload,
    charge_payload,
    void_payload,
)


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


# --- faults on captures, voids and refunds ---------------------------------------------------


async def _authorized(sim: httpx.AsyncClient, amount: int = 1000) -> dict:
    body = (await sim.post("/v1/charges", json=charge_payload(amount=amount, capture=False))).json()
    assert body["status"] == "approved"
    return body


def _operations(charge_reference: str) -> list[tuple[str, dict]]:
    """A capture, a void and a refund request, each with a fresh reference."""
    return [
        ("captures", capture_payload(charge_reference, 400)),
        ("voids", void_payload(charge_reference)),
        ("refunds", {"reference": f"re_{uuid.uuid4().hex}", "chargeReference": charge_reference,
                     "amount": 100}),
    ]


async def test_error_rate_fails_captures_voids_refunds_without_recording(
    sim: httpx.AsyncClient,
) -> None:
    auth = await _authorized(sim)
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    await _set_faults(sim, errorRate=1.0)
    for path, payload in _operations(auth["reference"])[:2] + _operations(charge["reference"])[2:]:
        response = await sim.post(f"/v1/{path}", json=payload)
        assert response.status_code == 500, path
        assert (response.json()["code"], response.json()["retryable"]) == ("processing_error", False)
        assert (await sim.get(f"/v1/{path}/{payload['reference']}")).status_code == 404, path
    row = (await sim.get(f"/v1/charges/{auth['reference']}")).json()
    assert (row["captured"], row["voided"]) == (False, False)
    assert (await sim.get(f"/v1/charges/{charge['reference']}")).json()["amountRefunded"] == 0


async def test_error_rate_never_denies_a_recorded_capture_void_or_refund(
    sim: httpx.AsyncClient,
) -> None:
    capture = capture_payload((await _authorized(sim))["reference"], 1000)
    void = void_payload((await _authorized(sim))["reference"])
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    refund = {"reference": f"re_{uuid.uuid4().hex}", "chargeReference": charge["reference"], "amount": 5}
    firsts = [await sim.post(f"/v1/{path}", json=p)
              for path, p in (("captures", capture), ("voids", void), ("refunds", refund))]
    await _set_faults(sim, errorRate=1.0)
    for (path, payload), first in zip(
        (("captures", capture), ("voids", void), ("refunds", refund)), firsts, strict=True
    ):
        replay = await sim.post(f"/v1/{path}", json=payload)
        assert replay.status_code == 200 and replay.content == first.content, path


async def test_drop_response_rate_records_captures_voids_refunds_then_drops(
    sim: httpx.AsyncClient,
) -> None:
    captured = await _authorized(sim)
    voided = await _authorized(sim)
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    await _set_faults(sim, dropResponseRate=1.0)
    ops = [_operations(captured["reference"])[0], _operations(voided["reference"])[1],
           _operations(charge["reference"])[2]]
    for path, payload in ops:
        with pytest.raises(httpx.RemoteProtocolError):
            await sim.post(f"/v1/{path}", json=payload)
    # Lost answers, recorded results: the lookups tell what happened.
    assert (await sim.get(f"/v1/captures/{ops[0][1]['reference']}")).json()["status"] == "captured"
    assert (await sim.get(f"/v1/voids/{ops[1][1]['reference']}")).json()["status"] == "voided"
    assert (await sim.get(f"/v1/refunds/{ops[2][1]['reference']}")).json()["status"] == "succeeded"
    # The replay of a lost capture is dropped too (faults hit replays), until they stop.
    with pytest.raises(httpx.RemoteProtocolError):
        await sim.post("/v1/captures", json=ops[0][1])
    await _set_faults(sim)
    replay = await sim.post("/v1/captures", json=ops[0][1])
    assert replay.json()["status"] == "captured" and replay.headers["idempotent-replayed"] == "true"
    assert (await sim.get(f"/v1/charges/{captured['reference']}")).json()["amountCaptured"] == 400


async def test_timeout_rate_records_captures_voids_and_refunds_then_answers_late(
    sim: httpx.AsyncClient, slow_card_delay_s: float
) -> None:
    # SPEC §7: the faults apply to every operation (charges, captures, voids, refunds).
    captured = await _authorized(sim)
    voided = await _authorized(sim)
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    await _set_faults(sim, timeoutRate=1.0)
    ops = [_operations(captured["reference"])[0], _operations(voided["reference"])[1],
           _operations(charge["reference"])[2]]
    for path, payload in ops:
        with pytest.raises(httpx.ReadTimeout):
            await sim.post(f"/v1/{path}", json=payload,
                           timeout=httpx.Timeout(5.0, read=slow_card_delay_s / 4))
    assert (await sim.get(f"/v1/captures/{ops[0][1]['reference']}")).json()["status"] == "captured"
    assert (await sim.get(f"/v1/voids/{ops[1][1]['reference']}")).json()["status"] == "voided"
    assert (await sim.get(f"/v1/refunds/{ops[2][1]['reference']}")).json()["status"] == "succeeded"


async def test_latency_applies_to_captures_voids_and_refunds(sim: httpx.AsyncClient) -> None:
    auth = await _authorized(sim)
    other = await _authorized(sim)
    charge = (await sim.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    await _set_faults(sim, latencyMs=300)
    ops = [_operations(auth["reference"])[0], _operations(other["reference"])[1],
           _operations(charge["reference"])[2]]
    for path, payload in ops:
        started = time.monotonic()
        response = await sim.post(f"/v1/{path}", json=payload)
        assert response.status_code == 200, path
        assert time.monotonic() - started >= 0.3, path
