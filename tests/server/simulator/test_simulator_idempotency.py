"""Idempotency by reference: the same reference never charges twice."""

from __future__ import annotations

import asyncio

import httpx

from paygate_server.simulator.testing import TestCards, charge_payload


async def _charges_of(client: httpx.AsyncClient, payment_intent_id: str) -> list[dict]:
    response = await client.get("/v1/charges", params={"paymentIntentId": payment_intent_id})
    assert response.status_code == 200
    return response.json()["data"]


async def test_same_reference_twice_returns_the_first_result(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.VISA)
    first = await client.post("/v1/charges", json=payload)
    second = await client.post("/v1/charges", json=payload)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content  # byte-for-byte the same body
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert len(await _charges_of(client, payload["paymentIntentId"])) == 1


async def test_replayed_decline_stays_a_decline(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.INSUFFICIENT_FUNDS)
    first = await client.post("/v1/charges", json=payload)
    second = await client.post("/v1/charges", json=payload)
    assert first.json()["status"] == "declined"
    assert second.content == first.content


async def test_same_reference_with_other_details_is_a_conflict(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.VISA, amount=1000)
    original = await client.post("/v1/charges", json=payload)
    assert original.status_code == 200
    for changed in (
        {**payload, "amount": 2000},
        {**payload, "currency": "EUR"},
        {**payload, "card": {**payload["card"], "number": TestCards.MASTERCARD}},
        {**payload, "paymentIntentId": "pi_other"},
    ):
        response = await client.post("/v1/charges", json=changed)
        assert response.status_code == 409
        body = response.json()
        assert body["status"] == "error" and body["code"] == "reference_conflict"
        assert TestCards.MASTERCARD not in response.text
    # Nothing new was charged, and the original result is unchanged.
    assert len(await _charges_of(client, payload["paymentIntentId"])) == 1
    assert (await client.get(f"/v1/charges/{payload['reference']}")).json()["amount"] == 1000


async def test_200_concurrent_posts_of_one_reference_record_one_charge(simulator_url: str) -> None:
    payload = charge_payload(TestCards.VISA)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30.0, limits=limits) as c:
        responses = await asyncio.gather(*(c.post("/v1/charges", json=payload) for _ in range(200)))
        assert {r.status_code for r in responses} == {200}
        assert len({r.content for r in responses}) == 1  # every client saw the same result
        replayed = sum(r.headers.get("idempotent-replayed") == "true" for r in responses)
        assert replayed == 199
        charges = await _charges_of(c, payload["paymentIntentId"])
    assert len(charges) == 1
    assert charges[0]["reference"] == payload["reference"]


async def test_concurrent_first_calls_of_1034_give_one_503_then_one_charge(
    simulator_url: str,
) -> None:
    payload = charge_payload(TestCards.RETRY_FIRST)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30.0, limits=limits) as c:
        responses = await asyncio.gather(*(c.post("/v1/charges", json=payload) for _ in range(50)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 49 + [503]
        assert len(await _charges_of(c, payload["paymentIntentId"])) == 1


async def test_many_references_concurrently_each_recorded_once(simulator_url: str) -> None:
    intent = "pi_many"
    payloads = [charge_payload(TestCards.VISA, payment_intent_id=intent) for _ in range(100)]
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30.0) as c:
        # Each reference posted twice, all at once.
        responses = await asyncio.gather(
            *(c.post("/v1/charges", json=p) for p in payloads + payloads)
        )
        assert {r.status_code for r in responses} == {200}
        charges = await _charges_of(c, intent)
    assert sorted(ch["reference"] for ch in charges) == sorted(p["reference"] for p in payloads)
