"""``GET /v1/charges?paymentIntentId=…`` lists, per charge, the references of the captures,
voids and refunds recorded against it (docs/simulator.md): how many of each reached it,
which its amounts cannot show for a second void or a refused second capture."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from paygate_server.simulator.store import (
    ChargeRecord,
    HoldDisposition,
    OperationReferences,
    RefundDisposition,
    Store,
)
from paygate_server.simulator.testing import (
    SimulatorProcess,
    TestCards,
    capture_payload,
    charge_payload,
    list_charges,
    refund_payload,
    set_faults,
    void_payload,
)

KINDS = ("captures", "voids", "refunds")


def _post(client: httpx.Client, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def _listed(base_url: str, intent: str) -> dict[str, dict[str, list[str]]]:
    """Each charge of the intent: its operation references, by kind."""
    return {row["reference"]: {k: row[k] for k in KINDS} for row in list_charges(base_url, intent)}


def test_every_recorded_request_is_listed_once_under_its_charge(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory()
    intent = f"pi_{uuid.uuid4().hex}"
    with httpx.Client(base_url=process.base_url, timeout=10.0) as client:
        voided = _post(client, "/v1/charges", charge_payload(TestCards.VISA, capture=False, payment_intent_id=intent))
        captured = _post(client, "/v1/charges", charge_payload(TestCards.VISA, capture=False, payment_intent_id=intent))
        untouched = _post(client, "/v1/charges", charge_payload(TestCards.VISA, payment_intent_id=intent))
        # Nothing recorded against a charge yet: empty lists, not missing keys.
        assert all(ops == {k: [] for k in KINDS} for ops in _listed(process.base_url, intent).values())

        first, second = void_payload(voided["reference"]), void_payload(voided["reference"])
        assert _post(client, "/v1/voids", first)["status"] == "voided"
        assert _post(client, "/v1/voids", first)["status"] == "voided"  # a replay: no new reference
        assert _post(client, "/v1/voids", second)["status"] == "voided"  # the "sent twice" case
        refused = capture_payload(voided["reference"], 1000)
        assert _post(client, "/v1/captures", refused)["status"] == "refused"  # recorded all the same
        # Not recorded, so not listed: a conflicting reuse of a reference.
        _post(client, "/v1/voids", void_payload(captured["reference"], reference=first["reference"]), 409)

        take = capture_payload(captured["reference"], 800)
        assert _post(client, "/v1/captures", take)["status"] == "captured"
        again = capture_payload(captured["reference"], 800)
        assert _post(client, "/v1/captures", again)["declineCode"] == "already_captured"
        late_void = void_payload(captured["reference"])
        assert _post(client, "/v1/voids", late_void)["status"] == "refused"
        refund = refund_payload(captured["reference"], 300)
        _post(client, "/v1/refunds", refund)
        _post(client, "/v1/refunds", refund)  # a replay
        _post(client, "/v1/refunds", refund_payload(captured["reference"], 600), 422)  # over what is left: no record

        automatic_refund = refund_payload(untouched["reference"], 100)
        _post(client, "/v1/refunds", automatic_refund)

    listed = _listed(process.base_url, intent)
    assert listed == {
        voided["reference"]: {
            "captures": [refused["reference"]],
            "voids": [first["reference"], second["reference"]],
            "refunds": [],
        },
        captured["reference"]: {
            "captures": [take["reference"], again["reference"]],
            "voids": [late_void["reference"]],
            "refunds": [refund["reference"]],
        },
        untouched["reference"]: {"captures": [], "voids": [], "refunds": [automatic_refund["reference"]]},
    }
    # Additive: the row's other fields are what they were.
    row = next(r for r in list_charges(process.base_url, intent) if r["reference"] == voided["reference"])
    assert (row["voided"], row["captured"], row["amountCaptured"]) == (True, False, 0)

    # Durable like the records: the same after a SIGKILL and restart on the same file.
    process.kill()
    process.start()
    assert _listed(process.base_url, intent) == listed


def test_the_merchant_listing_carries_them_too(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory()
    merchant = f"mer_{uuid.uuid4().hex}"
    with httpx.Client(base_url=process.base_url, timeout=10.0) as client:
        auths = [
            _post(client, "/v1/charges", charge_payload(TestCards.VISA, capture=False, merchant_id=merchant))
            for _ in range(2)
        ]
        void = void_payload(auths[1]["reference"])
        _post(client, "/v1/voids", void)
        rows = client.get("/v1/charges", params={"merchantId": merchant}).json()["data"]
    assert {r["reference"]: r["voids"] for r in rows} == {
        auths[0]["reference"]: [],
        auths[1]["reference"]: [void["reference"]],
    }


def test_a_request_failed_by_an_injected_error_is_not_listed(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    """An injected processing error records nothing (the reference can be sent again), so
    it never counts as a void that reached the hold."""
    process = simulator_factory()
    with httpx.Client(base_url=process.base_url, timeout=10.0) as client:
        auth = _post(client, "/v1/charges", charge_payload(TestCards.VISA, capture=False))
        set_faults(process.base_url, errorRate=1.0)
        void = void_payload(auth["reference"])
        assert client.post("/v1/voids", json=void).status_code >= 500
        assert list_charges(process.base_url, auth["paymentIntentId"])[0]["voids"] == []
        set_faults(process.base_url)
        _post(client, "/v1/voids", void)
    assert list_charges(process.base_url, auth["paymentIntentId"])[0]["voids"] == [void["reference"]]


def _authorization(reference: str, intent: str) -> ChargeRecord:
    return ChargeRecord(
        reference=reference,
        payment_intent_id=intent,
        merchant_id="mer_listing",
        amount=1000,
        currency="USD",
        card_brand="visa",
        card_last4="4242",
        status="approved",
        auth_code="ABC123",
        decline_code=None,
        created_at="2025-03-04T05:06:07.000Z",
        capture=False,
        expires_at="2025-03-11T05:06:07.000Z",
    )


async def test_the_store_orders_them_as_recorded(tmp_path: pathlib.Path) -> None:
    """By the record's time (the simulator's clock), not by reference; a tie (one
    millisecond) by reference. And each charge gets only its own."""
    store = Store(tmp_path / "s.sqlite3")
    store.open()
    try:
        await store.charge(_authorization("auth_a", "pi_a"))
        await store.charge(_authorization("auth_b", "pi_b"))
        for reference, at in (("v_z", "2025-03-04T05:06:08.000Z"), ("v_y", "2025-03-04T05:06:09.000Z"),
                              ("v_b", "2025-03-04T05:06:10.000Z"), ("v_a", "2025-03-04T05:06:10.000Z")):
            disposition, _, _ = await store.void(reference, "auth_a", at)
            assert disposition is HoldDisposition.CREATED
        assert (await store.capture("c_1", "auth_b", 400, "2025-03-04T05:06:08.000Z"))[0] is (
            HoldDisposition.CREATED
        )
        for reference, at in (("r_2", "2025-03-04T05:06:09.000Z"), ("r_1", "2025-03-04T05:06:11.000Z")):
            assert (await store.refund(reference, "auth_b", 100, at))[0] is RefundDisposition.CREATED

        [(charge_a, ops_a)] = await store.list_charges(payment_intent_id="pi_a")
        assert charge_a.reference == "auth_a" and charge_a.voided
        assert ops_a == OperationReferences(voids=("v_z", "v_y", "v_a", "v_b"))
        [(_, ops_b)] = await store.list_charges(payment_intent_id="pi_b")
        assert ops_b == OperationReferences(captures=("c_1",), refunds=("r_2", "r_1"))
        by_merchant = await store.list_charges(merchant_id="mer_listing")
        assert [ops for _, ops in by_merchant] == [ops_a, ops_b]
        assert await store.list_charges(payment_intent_id="pi_none") == []
    finally:
        await store.close()
