"""Refunds: partial, idempotent, never beyond the charge."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from paygate_server.simulator.testing import TestCards, charge_payload


def _ref() -> str:
    return f"re_{uuid.uuid4().hex}"


async def _approved_charge(client: httpx.AsyncClient, amount: int = 1000) -> dict:
    response = await client.post("/v1/charges", json=charge_payload(TestCards.VISA, amount=amount))
    assert response.json()["status"] == "approved"
    return response.json()


async def test_partial_refunds_up_to_the_charge(client: httpx.AsyncClient) -> None:
    charge = await _approved_charge(client, 1000)
    first = {"reference": _ref(), "chargeReference": charge["reference"], "amount": 300}
    response = await client.post("/v1/refunds", json=first)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["amount"] == 300 and body["currency"] == "USD"
    assert body["chargeReference"] == charge["reference"]
    assert (await client.get(f"/v1/charges/{charge['reference']}")).json()["amountRefunded"] == 300

    rest = {"reference": _ref(), "chargeReference": charge["reference"], "amount": 700}
    assert (await client.post("/v1/refunds", json=rest)).status_code == 200

    one_more = {"reference": _ref(), "chargeReference": charge["reference"], "amount": 1}
    refused = await client.post("/v1/refunds", json=one_more)
    assert refused.status_code == 422
    assert refused.json()["code"] == "amount_exceeds_remaining"
    assert (await client.get(f"/v1/refunds/{one_more['reference']}")).status_code == 404
    assert (await client.get(f"/v1/charges/{charge['reference']}")).json()["amountRefunded"] == 1000


async def test_refund_is_idempotent_by_reference(client: httpx.AsyncClient) -> None:
    charge = await _approved_charge(client, 1000)
    refund = {"reference": _ref(), "chargeReference": charge["reference"], "amount": 400}
    first = await client.post("/v1/refunds", json=refund)
    second = await client.post("/v1/refunds", json=refund)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["idempotent-replayed"] == "true"
    assert (await client.get(f"/v1/charges/{charge['reference']}")).json()["amountRefunded"] == 400
    conflict = await client.post("/v1/refunds", json={**refund, "amount": 500})
    assert conflict.status_code == 409 and conflict.json()["code"] == "reference_conflict"
    fetched = await client.get(f"/v1/refunds/{refund['reference']}")
    assert fetched.status_code == 200 and fetched.json() == first.json()


async def test_over_refund_in_one_go_is_refused(client: httpx.AsyncClient) -> None:
    charge = await _approved_charge(client, 1000)
    refused = await client.post(
        "/v1/refunds",
        json={"reference": _ref(), "chargeReference": charge["reference"], "amount": 1001},
    )
    assert refused.status_code == 422
    assert refused.json()["status"] == "error"
    assert refused.json()["code"] == "amount_exceeds_remaining"
    assert (await client.get(f"/v1/charges/{charge['reference']}")).json()["amountRefunded"] == 0


async def test_refund_of_declined_or_unknown_charge_is_refused(client: httpx.AsyncClient) -> None:
    declined = await client.post("/v1/charges", json=charge_payload(TestCards.GENERIC_DECLINE))
    refused = await client.post(
        "/v1/refunds",
        json={"reference": _ref(), "chargeReference": declined.json()["reference"], "amount": 1},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "charge_not_refundable"
    missing = await client.post(
        "/v1/refunds", json={"reference": _ref(), "chargeReference": "txn_never", "amount": 1}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "charge_not_found"


async def test_concurrent_refunds_never_exceed_the_charge(simulator_url: str) -> None:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=30.0) as c:
        charge = await _approved_charge(c, 1000)
        refunds = [
            {"reference": _ref(), "chargeReference": charge["reference"], "amount": 100}
            for _ in range(25)
        ]
        responses = await asyncio.gather(*(c.post("/v1/refunds", json=r) for r in refunds))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 10 + [422] * 15
        recorded = (await c.get(f"/v1/charges/{charge['reference']}")).json()
    assert recorded["amountRefunded"] == 1000
