"""Malformed input gets a 4xx JSON error, never a 500 or a traceback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from paygate_server.simulator.context import read_body
from paygate_server.simulator.protocol import ProtocolError
from paygate_server.simulator.testing import TestCards, charge_payload
from tests.support.cut_off import cut_off_request


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _card(**changes: Any) -> dict[str, Any]:
    payload = charge_payload(TestCards.VISA)
    card = {**payload["card"], **changes}
    return {**payload, "card": {k: v for k, v in card.items() if v is not _DROP}}


_DROP = object()
_BASE = charge_payload(TestCards.VISA)

CHARGE_CASES: list[tuple[str, Any, str]] = [
    ("missing reference", _without(_BASE, "reference"), "reference"),
    ("reference with a slash", {**_BASE, "reference": "a/b"}, "reference"),
    ("reference too long", {**_BASE, "reference": "r" * 256}, "reference"),
    ("reference not a string", {**_BASE, "reference": 12}, "reference"),
    ("missing paymentIntentId", _without(_BASE, "paymentIntentId"), "paymentIntentId"),
    ("missing merchantId", _without(_BASE, "merchantId"), "merchantId"),
    ("missing amount", _without(_BASE, "amount"), "amount"),
    ("zero amount", {**_BASE, "amount": 0}, "amount"),
    ("negative amount", {**_BASE, "amount": -5}, "amount"),
    ("amount too big", {**_BASE, "amount": 100_000_000}, "amount"),
    ("float amount", {**_BASE, "amount": 10.5}, "amount"),
    ("string amount", {**_BASE, "amount": "1000"}, "amount"),
    ("boolean amount", {**_BASE, "amount": True}, "amount"),
    ("lower-case currency", {**_BASE, "currency": "usd"}, "currency"),
    ("missing currency", _without(_BASE, "currency"), "currency"),
    ("missing card", _without(_BASE, "card"), "card"),
    ("card not an object", {**_BASE, "card": "4242424242424242"}, "card"),
    ("card number not a string", _card(number=4242424242424242), "card.number"),
    ("card number with letters", _card(number="4242abcd42424242"), "card.number"),
    ("card number too short", _card(number="42424242"), "card.number"),
    ("card number missing", _card(number=_DROP), "card.number"),
    ("month 13", _card(expMonth=13), "card.expMonth"),
    ("month 0", _card(expMonth=0), "card.expMonth"),
    ("year as string", _card(expYear="2030"), "card.expYear"),
    ("three-digit year", _card(expYear=203), "card.expYear"),
    ("cvc as number", _card(cvc=123), "card.cvc"),
    ("cvc too short", _card(cvc="12"), "card.cvc"),
]


@pytest.mark.parametrize(("case", "body", "param"), CHARGE_CASES, ids=[c[0] for c in CHARGE_CASES])
async def test_invalid_charge_is_400(
    client: httpx.AsyncClient, case: str, body: Any, param: str
) -> None:
    response = await client.post("/v1/charges", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status"] == "error"
    assert error["code"] in ("parameter_missing", "parameter_invalid")
    assert error["param"] == param
    assert error["retryable"] is False
    if isinstance(body, dict) and "reference" in body and isinstance(body["reference"], str):
        assert (await client.get(f"/v1/charges/{body['reference']}")).status_code in (404, 400)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1, 2]", b'"string"', b"{", b"\xff\xfe", b"null", b'{"a": NaN}'],
)
async def test_unparseable_bodies_are_400(client: httpx.AsyncClient, raw: bytes) -> None:
    for path in ("/v1/charges", "/v1/refunds", "/v1/_faults"):
        response = await client.post(
            path, content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, (path, raw, response.text)
        assert response.json()["code"] == "invalid_json"


async def test_body_over_64_kib_is_413(client: httpx.AsyncClient) -> None:
    payload = {**charge_payload(TestCards.VISA), "padding": "x" * (70 * 1024)}
    response = await client.post("/v1/charges", json=payload)
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"


@pytest.mark.parametrize(
    "body",
    [
        {"chargeReference": "txn_x", "amount": 1},
        {"reference": "re_x", "amount": 1},
        {"reference": "re_x", "chargeReference": "txn_x"},
        {"reference": "re_x", "chargeReference": "txn_x", "amount": 0},
        {"reference": "re_x", "chargeReference": "txn_x", "amount": "5"},
        {"reference": "re x", "chargeReference": "txn_x", "amount": 5},
    ],
)
async def test_invalid_refund_is_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await client.post("/v1/refunds", json=body)
    assert response.status_code == 400
    assert response.json()["code"] in ("parameter_missing", "parameter_invalid")


async def test_error_never_echoes_the_card_number(client: httpx.AsyncClient) -> None:
    number = "4242 4242 4242 42x2"
    response = await client.post("/v1/charges", json=_card(number=number))
    assert response.status_code == 400
    assert "4242" not in response.text


async def test_listing_needs_a_filter(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/charges")
    assert response.status_code == 400 and response.json()["code"] == "parameter_missing"


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["status"] == "error"
    wrong = await client.put("/v1/charges", json={})
    assert wrong.status_code == 405 and wrong.json()["status"] == "error"
    unknown = await client.get("/v1/charges/txn_never_seen")
    assert unknown.status_code == 404 and unknown.json()["code"] == "charge_not_found"


async def test_a_body_cut_off_is_a_client_error_not_a_500() -> None:
    """As the gateway's (http/api.py): a client leaving mid-body is 400 invalid_json, not
    ClientDisconnect out of the read (a 500 with its traceback in the simulator's log)."""
    with pytest.raises(ProtocolError) as refused:
        await read_body(cut_off_request("/v1/charges"))
    assert (refused.value.status, refused.value.code) == (400, "invalid_json")
