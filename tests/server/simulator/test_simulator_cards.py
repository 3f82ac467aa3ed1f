"""Every SPEC §7 test card, against the simulator running as a separate process."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from paygate_server.simulator.testing import TestCards, charge_payload


@pytest.mark.parametrize(
    ("number", "brand"),
    [(TestCards.VISA, "visa"), (TestCards.MASTERCARD, "mastercard"), (TestCards.AMEX, "amex")],
)
async def test_approved_cards(client: httpx.AsyncClient, number: str, brand: str) -> None:
    payload = charge_payload(number, cvc="1234" if brand == "amex" else "123")
    response = await client.post("/v1/charges", json=payload)
    assert response.status_code == 200
    body = response.json()
    assert body["reference"] == payload["reference"]
    assert body["status"] == "approved"
    assert body["declineCode"] is None
    assert len(body["authCode"]) == 6 and body["authCode"].isalnum()
    assert body["card"] == {"brand": brand, "last4": number[-4:]}
    assert body["createdAt"].endswith("Z")
    recorded = (await client.get(f"/v1/charges/{payload['reference']}")).json()
    assert recorded["status"] == "approved" and recorded["authCode"] == body["authCode"]


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (TestCards.GENERIC_DECLINE, "generic_decline"),
        (TestCards.INSUFFICIENT_FUNDS, "insufficient_funds"),
        (TestCards.EXPIRED_CARD, "expired_card"),
        (TestCards.INCORRECT_CVC, "incorrect_cvc"),
    ],
)
async def test_declined_cards(client: httpx.AsyncClient, number: str, code: str) -> None:
    payload = charge_payload(number)
    response = await client.post("/v1/charges", json=payload)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "declined"
    assert body["declineCode"] == code
    assert body["authCode"] is None
    # A decline is a recorded result too.
    recorded = await client.get(f"/v1/charges/{payload['reference']}")
    assert recorded.status_code == 200 and recorded.json()["declineCode"] == code


async def test_other_luhn_valid_card_is_approved(client: httpx.AsyncClient) -> None:
    # 4111 1111 1111 1111, written with separators as a person would type it.
    response = await client.post("/v1/charges", json=charge_payload("4111-1111 1111-1111"))
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["card"]["last4"] == "1111"


async def test_bad_luhn_is_declined_invalid_number(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/charges", json=charge_payload("4242424242424241"))
    assert response.status_code == 200
    assert response.json()["status"] == "declined"
    assert response.json()["declineCode"] == "invalid_number"


async def test_past_expiry_is_declined_expired_card(client: httpx.AsyncClient) -> None:
    last_month = time.gmtime().tm_year - 1
    response = await client.post(
        "/v1/charges", json=charge_payload(TestCards.VISA, exp_month=12, exp_year=last_month)
    )
    assert response.json()["declineCode"] == "expired_card"
    # Valid through the end of the expiry month: the current month is still good.
    now = time.gmtime()
    current = await client.post(
        "/v1/charges",
        json=charge_payload(TestCards.VISA, exp_month=now.tm_mon, exp_year=now.tm_year),
    )
    assert current.json()["status"] == "approved"


async def test_0119_is_a_processor_error_every_time_and_records_nothing(
    client: httpx.AsyncClient,
) -> None:
    payload = charge_payload(TestCards.PROCESSING_ERROR)
    for _ in range(3):
        response = await client.post("/v1/charges", json=payload)
        assert response.status_code == 500
        body = response.json()
        assert body["status"] == "error"
        assert body["code"] == "processing_error"
        assert body["retryable"] is False
        assert body["message"]
    assert (await client.get(f"/v1/charges/{payload['reference']}")).status_code == 404
    listed = await client.get("/v1/charges", params={"paymentIntentId": payload["paymentIntentId"]})
    assert listed.json() == {"data": []}


async def test_1018_is_recorded_at_once_but_answered_late(
    client: httpx.AsyncClient, slow_card_delay_s: float
) -> None:
    payload = charge_payload(TestCards.SLOW_ANSWER)
    # A client whose timeout is shorter than the delay gives up...
    with pytest.raises(httpx.ReadTimeout):
        await client.post(
            "/v1/charges", json=payload, timeout=httpx.Timeout(5.0, read=slow_card_delay_s / 4)
        )
    # ...yet the charge is already there: it was recorded before the wait.
    recorded = await client.get(f"/v1/charges/{payload['reference']}")
    assert recorded.status_code == 200
    assert recorded.json()["status"] == "approved"


async def test_1018_answer_arrives_after_the_delay(
    client: httpx.AsyncClient, slow_card_delay_s: float
) -> None:
    payload = charge_payload(TestCards.SLOW_ANSWER)
    started = time.monotonic()
    response = await client.post("/v1/charges", json=payload)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "approved"
    assert elapsed >= slow_card_delay_s * 0.95
    # A replay of the reference answers at once with the recorded result.
    started = time.monotonic()
    replay = await client.post("/v1/charges", json=payload)
    assert time.monotonic() - started < slow_card_delay_s / 2
    assert replay.json() == response.json()


async def test_1026_answer_is_lost_but_charge_is_recorded(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.DROPPED_ANSWER)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/charges", json=payload)
    recorded = await client.get(f"/v1/charges/{payload['reference']}")
    assert recorded.status_code == 200
    assert recorded.json()["status"] == "approved"
    # The retry with the same reference gets the recorded result and charges nothing more.
    replay = await client.post("/v1/charges", json=payload)
    assert replay.status_code == 200
    assert replay.json()["authCode"] == recorded.json()["authCode"]
    listed = await client.get("/v1/charges", params={"paymentIntentId": payload["paymentIntentId"]})
    assert len(listed.json()["data"]) == 1


async def test_1026_drop_is_a_transport_error_for_a_fresh_connection(simulator_url: str) -> None:
    # Not an artefact of a reused keep-alive connection: a brand-new one fails too.
    async with httpx.AsyncClient(base_url=simulator_url, timeout=5.0) as fresh:
        with pytest.raises(httpx.TransportError):
            await fresh.post("/v1/charges", json=charge_payload(TestCards.DROPPED_ANSWER))
        # The client is still usable afterwards.
        assert (await fresh.get("/healthz")).status_code == 200


async def test_1034_first_call_503_then_approved(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.RETRY_FIRST)
    first = await client.post("/v1/charges", json=payload)
    assert first.status_code == 503
    assert first.json()["code"] == "temporarily_unavailable"
    assert first.json()["retryable"] is True
    assert (await client.get(f"/v1/charges/{payload['reference']}")).status_code == 404
    second = await client.post("/v1/charges", json=payload)
    assert second.status_code == 200
    assert second.json()["status"] == "approved"
    third = await client.post("/v1/charges", json=payload)
    assert third.json() == second.json()
    # A new reference starts over with a 503.
    other = await client.post("/v1/charges", json=charge_payload(TestCards.RETRY_FIRST))
    assert other.status_code == 503


async def test_1042_is_approved_after_one_and_a_half_seconds(client: httpx.AsyncClient) -> None:
    payload = charge_payload(TestCards.DELAYED_APPROVAL)
    started = time.monotonic()
    fast = asyncio.create_task(client.post("/v1/charges", json=charge_payload(TestCards.VISA)))
    response = await client.post("/v1/charges", json=payload)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "approved"
    assert 1.45 <= elapsed < 5.0
    # The delay is this request's own: it does not hold up other charges.
    assert (await fast).status_code == 200
