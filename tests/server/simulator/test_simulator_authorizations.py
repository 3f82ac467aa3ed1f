"""Authorizations (``capture: false``), captures and voids, against the simulator process."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import httpx
import pytest

from paygate_server.simulator.testing import (
    TestCards,
    capture_payload,
    charge_payload,
    void_payload,
)

WEEK_S = 7 * 24 * 3600


async def _authorize(client: httpx.AsyncClient, amount: int = 1000, **kw: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/charges", json=charge_payload(TestCards.VISA, amount=amount, capture=False, **kw)
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    return response.json()  # type: ignore[no-any-return]


async def _row(client: httpx.AsyncClient, charge: dict[str, Any]) -> dict[str, Any]:
    listed = await client.get("/v1/charges", params={"paymentIntentId": charge["paymentIntentId"]})
    rows = [r for r in listed.json()["data"] if r["reference"] == charge["reference"]]
    assert len(rows) == 1
    return rows[0]  # type: ignore[no-any-return]


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_an_authorization_holds_and_captures_nothing(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1500)
    assert auth["capture"] is False
    assert len(auth["authCode"]) == 6
    # The default hold: 7 days from the authorization.
    held_for = _at(auth["expiresAt"]) - _at(auth["createdAt"])
    assert held_for == dt.timedelta(seconds=WEEK_S)
    row = await _row(client, auth)
    assert row["status"] == "approved" and row["capture"] is False
    assert (row["captured"], row["amountCaptured"], row["voided"], row["expired"]) == (
        False, 0, False, False,
    )
    # The default is unchanged: a charge is captured at once, with no hold to expire.
    charge = (await client.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    assert charge["capture"] is True and charge["expiresAt"] is None
    row = await _row(client, charge)
    assert (row["captured"], row["amountCaptured"], row["voided"]) == (True, 1000, False)


async def test_full_capture(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1500)
    payload = capture_payload(auth["reference"], 1500)
    response = await client.post("/v1/captures", json=payload)
    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == payload["reference"]
    assert body["chargeReference"] == auth["reference"]
    assert (body["status"], body["amount"], body["declineCode"]) == ("captured", 1500, None)
    assert body["currency"] == "USD" and body["createdAt"].endswith("Z")
    assert (await client.get(f"/v1/captures/{payload['reference']}")).json() == body
    row = await _row(client, auth)
    assert (row["captured"], row["amountCaptured"], row["voided"]) == (True, 1500, False)
    recorded = (await client.get(f"/v1/charges/{auth['reference']}")).json()
    assert recorded["amountCaptured"] == 1500 and recorded["captured"] is True
    # The charge's own answer is what it was: a replay of the authorization is unchanged.
    replay = await client.post(
        "/v1/charges",
        json=charge_payload(
            TestCards.VISA, reference=auth["reference"], payment_intent_id=auth["paymentIntentId"],
            amount=1500, capture=False,
        ),
    )
    assert replay.json() == auth and replay.headers["idempotent-replayed"] == "true"


async def test_partial_capture_releases_the_rest_and_bounds_refunds(
    client: httpx.AsyncClient,
) -> None:
    auth = await _authorize(client, 1000)
    captured = await client.post("/v1/captures", json=capture_payload(auth["reference"], 600))
    assert captured.json()["status"] == "captured" and captured.json()["amount"] == 600
    row = await _row(client, auth)
    assert row["amountCaptured"] == 600 and row["amount"] == 1000
    # The rest was released: a second capture, even of what is left, is refused.
    again = await client.post("/v1/captures", json=capture_payload(auth["reference"], 400))
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["declineCode"]) == ("refused", "already_captured")
    # Refunds are bounded by what was captured, not by what was authorized.
    refund = {"reference": f"re_{uuid.uuid4().hex}", "chargeReference": auth["reference"]}
    over = await client.post("/v1/refunds", json={**refund, "amount": 601})
    assert over.status_code == 422 and over.json()["code"] == "amount_exceeds_remaining"
    ok = await client.post("/v1/refunds", json={**refund, "amount": 600})
    assert ok.status_code == 200
    assert (await _row(client, auth))["amountRefunded"] == 600


async def test_capture_is_idempotent_by_reference(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1000)
    payload = capture_payload(auth["reference"], 700)
    first = await client.post("/v1/captures", json=payload)
    second = await client.post("/v1/captures", json=payload)
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    # The same reference with other details: a conflict, nothing captured twice.
    other = await client.post("/v1/captures", json={**payload, "amount": 500})
    assert other.status_code == 409 and other.json()["code"] == "reference_conflict"
    assert "retryable" not in other.json()
    assert (await _row(client, auth))["amountCaptured"] == 700
    # A refused capture is a recorded result too, replayed as such.
    refused = capture_payload(auth["reference"], 100)
    first_refusal = await client.post("/v1/captures", json=refused)
    assert first_refusal.json()["status"] == "refused"
    assert (await client.post("/v1/captures", json=refused)).content == first_refusal.content
    assert (await client.get(f"/v1/captures/{refused['reference']}")).json()["status"] == "refused"


@pytest.mark.parametrize("amount", [0, -5, 1001, "500", 12.5, True, None])
async def test_capture_amount_is_a_positive_integer_up_to_the_hold(
    client: httpx.AsyncClient, amount: object
) -> None:
    auth = await _authorize(client, 1000)
    payload = capture_payload(auth["reference"], 1)
    payload["amount"] = amount
    response = await client.post("/v1/captures", json=payload)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["param"] == "amount"
    assert body["code"] == ("parameter_missing" if amount is None else "parameter_invalid")
    assert body["retryable"] is False
    # Nothing recorded, nothing taken: the hold is still whole and capturable.
    assert (await client.get(f"/v1/captures/{payload['reference']}")).status_code == 404
    assert (await _row(client, auth))["amountCaptured"] == 0
    ok = await client.post("/v1/captures", json={**payload, "amount": 1000})
    assert ok.json()["status"] == "captured"


@pytest.mark.parametrize("body", [{}, {"reference": "cap_x"}, {"chargeReference": "txn_x", "amount": 1},
                                  {"reference": "bad ref", "chargeReference": "txn_x", "amount": 1}])
async def test_capture_and_void_bodies_are_validated(client: httpx.AsyncClient, body: dict) -> None:
    for path in ("/v1/captures", "/v1/voids"):
        response = await client.post(path, json=body)
        assert response.status_code == 400
        assert response.json()["code"] in ("parameter_missing", "parameter_invalid")


async def test_capture_of_what_holds_nothing(client: httpx.AsyncClient) -> None:
    # An automatic charge was captured when it was made: refused, and recorded as such.
    charge = (await client.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    auto = await client.post("/v1/captures", json=capture_payload(charge["reference"], 1000))
    assert auto.status_code == 200
    assert (auto.json()["status"], auto.json()["declineCode"]) == ("refused", "already_captured")
    # A declined charge holds nothing: a client error, nothing recorded.
    declined = (
        await client.post("/v1/charges", json=charge_payload(TestCards.GENERIC_DECLINE, capture=False))
    ).json()
    assert declined["status"] == "declined" and declined["expiresAt"] is None
    payload = capture_payload(declined["reference"], 1000)
    response = await client.post("/v1/captures", json=payload)
    assert response.status_code == 422 and response.json()["code"] == "charge_not_capturable"
    assert response.json()["retryable"] is False
    assert (await client.get(f"/v1/captures/{payload['reference']}")).status_code == 404
    # An unknown charge: 404, nothing recorded.
    payload = capture_payload("txn_never_seen", 10)
    response = await client.post("/v1/captures", json=payload)
    assert response.status_code == 404 and response.json()["code"] == "charge_not_found"
    missing = await client.get(f"/v1/captures/{payload['reference']}")
    assert missing.status_code == 404 and missing.json()["code"] == "capture_not_found"


async def test_void_releases_the_hold(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1000)
    payload = void_payload(auth["reference"])
    first = await client.post("/v1/voids", json=payload)
    assert first.status_code == 200
    body = first.json()
    assert (body["reference"], body["chargeReference"]) == (payload["reference"], auth["reference"])
    assert (body["status"], body["declineCode"]) == ("voided", None)
    replay = await client.post("/v1/voids", json=payload)
    assert replay.content == first.content and replay.headers["idempotent-replayed"] == "true"
    assert (await client.get(f"/v1/voids/{payload['reference']}")).json() == body
    row = await _row(client, auth)
    assert (row["captured"], row["amountCaptured"], row["voided"]) == (False, 0, True)
    # Nothing is held any more: no capture, no refund.
    capture = await client.post("/v1/captures", json=capture_payload(auth["reference"], 1000))
    assert (capture.json()["status"], capture.json()["declineCode"]) == (
        "refused", "authorization_voided",
    )
    refund = {"reference": f"re_{uuid.uuid4().hex}", "chargeReference": auth["reference"], "amount": 1}
    assert (await client.post("/v1/refunds", json=refund)).json()["code"] == "charge_not_refundable"
    # Voiding a voided hold again (another reference) leaves it voided: nothing to release.
    again = await client.post("/v1/voids", json=void_payload(auth["reference"]))
    assert again.json()["status"] == "voided"
    # The same void reference for another charge: a conflict.
    other = await _authorize(client)
    conflict = await client.post("/v1/voids", json={**payload, "chargeReference": other["reference"]})
    assert conflict.status_code == 409 and conflict.json()["code"] == "reference_conflict"
    assert (await _row(client, other))["voided"] is False


async def test_void_refused_once_captured(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1000)
    await client.post("/v1/captures", json=capture_payload(auth["reference"], 1000))
    refused = await client.post("/v1/voids", json=void_payload(auth["reference"]))
    assert refused.status_code == 200
    assert (refused.json()["status"], refused.json()["declineCode"]) == ("refused", "already_captured")
    row = await _row(client, auth)
    assert (row["captured"], row["voided"]) == (True, False)
    charge = (await client.post("/v1/charges", json=charge_payload(TestCards.VISA))).json()
    auto = await client.post("/v1/voids", json=void_payload(charge["reference"]))
    assert auto.json()["declineCode"] == "already_captured"


async def test_void_of_what_holds_nothing(client: httpx.AsyncClient) -> None:
    declined = (
        await client.post("/v1/charges", json=charge_payload(TestCards.INSUFFICIENT_FUNDS, capture=False))
    ).json()
    payload = void_payload(declined["reference"])
    response = await client.post("/v1/voids", json=payload)
    assert response.status_code == 422 and response.json()["code"] == "charge_not_voidable"
    assert (await client.get(f"/v1/voids/{payload['reference']}")).status_code == 404
    payload = void_payload("txn_never_seen")
    assert (await client.post("/v1/voids", json=payload)).json()["code"] == "charge_not_found"
    missing = await client.get(f"/v1/voids/{payload['reference']}")
    assert missing.status_code == 404 and missing.json()["code"] == "void_not_found"


async def test_refund_of_an_uncaptured_authorization_is_refused(client: httpx.AsyncClient) -> None:
    auth = await _authorize(client, 1000)
    refund = {"reference": f"re_{uuid.uuid4().hex}", "chargeReference": auth["reference"], "amount": 1}
    response = await client.post("/v1/refunds", json=refund)
    assert response.status_code == 422 and response.json()["code"] == "charge_not_refundable"
    assert (await client.get(f"/v1/refunds/{refund['reference']}")).status_code == 404


async def test_capture_flag_is_part_of_the_charge_and_validated(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.VISA, capture=False)
    assert (await client.post("/v1/charges", json=payload)).status_code == 200
    # The same reference as a charge instead of an authorization: another request.
    conflict = await client.post("/v1/charges", json={**payload, "capture": True})
    assert conflict.status_code == 409 and conflict.json()["code"] == "reference_conflict"
    for bad in ("false", 0, None, [], {}):
        response = await client.post("/v1/charges", json={**charge_payload(), "capture": bad})
        if bad is None:  # null is "left out": the default, a charge
            assert response.json()["capture"] is True
            continue
        assert response.status_code == 400 and response.json()["param"] == "capture"


async def test_settlement_lists_captures_never_uncaptured_authorizations(
    client: httpx.AsyncClient,
) -> None:
    intent = f"pi_{uuid.uuid4().hex}"
    held = await _authorize(client, 111, payment_intent_id=intent)
    voided = await _authorize(client, 222, payment_intent_id=intent)
    captured = await _authorize(client, 333, payment_intent_id=intent)
    await client.post("/v1/voids", json=void_payload(voided["reference"]))
    capture = (
        await client.post("/v1/captures", json=capture_payload(captured["reference"], 300))
    ).json()
    charge = (
        await client.post("/v1/charges", json=charge_payload(payment_intent_id=intent, amount=444))
    ).json()
    day = capture["createdAt"][:10]
    report = (await client.get("/v1/settlements", params={"date": day})).json()
    mine = {c["reference"] for c in report["charges"]}
    assert charge["reference"] in mine
    assert not mine & {held["reference"], voided["reference"], captured["reference"]}
    captures = [c for c in report["captures"] if c["chargeReference"] == captured["reference"]]
    assert captures == [
        {
            "reference": capture["reference"],
            "chargeReference": captured["reference"],
            "paymentIntentId": intent,
            "merchantId": captured["merchantId"],
            "amount": 300,
            "currency": "USD",
            "authCode": captured["authCode"],
            "createdAt": capture["createdAt"],
        }
    ]
    refs = {c["chargeReference"] for c in report["captures"]}
    assert held["reference"] not in refs and voided["reference"] not in refs
    usd = report["totals"]["USD"]
    assert usd["captureCount"] == len(report["captures"])
    assert usd["capturedAmount"] == sum(c["amount"] for c in report["captures"])
    assert usd["netAmount"] == usd["chargedAmount"] + usd["capturedAmount"] - usd["refundedAmount"]


# --- the test cards, on the authorization path ----------------------------------------------


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (TestCards.GENERIC_DECLINE, "generic_decline"),
        (TestCards.INSUFFICIENT_FUNDS, "insufficient_funds"),
        (TestCards.EXPIRED_CARD, "expired_card"),
        (TestCards.INCORRECT_CVC, "incorrect_cvc"),
    ],
)
async def test_declining_cards_decline_authorizations(
    client: httpx.AsyncClient, number: str, code: str
) -> None:
    payload = charge_payload(number, capture=False)
    body = (await client.post("/v1/charges", json=payload)).json()
    assert (body["status"], body["declineCode"], body["capture"]) == ("declined", code, False)
    row = await _row(client, body)
    assert (row["status"], row["captured"], row["expired"]) == ("declined", False, False)


@pytest.mark.parametrize("number", [TestCards.VISA, TestCards.MASTERCARD, TestCards.AMEX])
async def test_approving_cards_authorize(client: httpx.AsyncClient, number: str) -> None:
    payload = charge_payload(number, capture=False, cvc="1234" if number == TestCards.AMEX else "123")
    body = (await client.post("/v1/charges", json=payload)).json()
    assert (body["status"], body["capture"]) == ("approved", False)
    captured = await client.post("/v1/captures", json=capture_payload(payload["reference"], 1000))
    assert captured.json()["status"] == "captured"


async def test_processing_error_card_authorizes_nothing_every_time(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.PROCESSING_ERROR, capture=False)
    for _ in range(2):
        response = await client.post("/v1/charges", json=payload)
        assert response.status_code == 500 and response.json()["retryable"] is False
    assert (await client.get(f"/v1/charges/{payload['reference']}")).status_code == 404


async def test_retry_first_card_authorizes_on_the_retry(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.RETRY_FIRST, capture=False)
    first = await client.post("/v1/charges", json=payload)
    assert first.status_code == 503 and first.json()["retryable"] is True
    second = await client.post("/v1/charges", json=payload)
    assert second.status_code == 200 and second.json()["capture"] is False
    assert (await _row(client, second.json()))["captured"] is False


async def test_dropped_answer_card_records_the_authorization(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.DROPPED_ANSWER, capture=False)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/charges", json=payload)
    recorded = (await client.get(f"/v1/charges/{payload['reference']}")).json()
    assert (recorded["status"], recorded["capture"], recorded["captured"]) == ("approved", False, False)
    # The lost authorization is still a hold the client can capture once it knows.
    captured = await client.post("/v1/captures", json=capture_payload(payload["reference"], 1000))
    assert captured.json()["status"] == "captured"


async def test_slow_and_delayed_cards_authorize(
    client: httpx.AsyncClient, slow_card_delay_s: float
) -> None:
    slow = charge_payload(TestCards.SLOW_ANSWER, capture=False)
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/v1/charges", json=slow, timeout=httpx.Timeout(5.0, read=slow_card_delay_s / 4))
    recorded = (await client.get(f"/v1/charges/{slow['reference']}")).json()
    assert (recorded["status"], recorded["capture"]) == ("approved", False)
    delayed = charge_payload(TestCards.DELAYED_APPROVAL, capture=False)
    started = time.monotonic()
    body = (await client.post("/v1/charges", json=delayed)).json()
    assert time.monotonic() - started >= 1.5
    assert (body["status"], body["capture"]) == ("approved", False)
