"""Hostile and malformed input never gets a 500 or a traceback, and never a partial write."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.app import InProcessGateway
from tests.support.signing import SignedClient

POSTS = ["/api/v1/payment/intent", "/api/v1/payment/cancel", "/api/v1/payment/process", "/api/v1/payment/refund"]
GETS = ["/api/v1/payment/intents", "/api/v1/payment/status", "/api/v1/payment/intent/pi_x",
        "/api/v1/payment/status/stream", "/api/v1/payment/intent/pi_x/history"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["amount", "currency", "productDetails", "metadata", "description", "merchantId",
                               "paymentIntentId", "paymentMethod", "paymentDetails", "reason", "status"])
bodies = st.dictionaries(field_names, json_values, max_size=6)


@pytest.fixture
async def shop(gw: InProcessGateway) -> SignedClient:
    # Function-scoped, so one merchant serves every example hypothesis generates.
    return await gw.new_merchant()


async def _no_server_error(r: Any) -> None:
    assert r.status_code < 500, r.text
    assert "Traceback" not in r.text
    assert r.headers.get("x-request-id")
    if r.status_code >= 400:
        error = r.json()["error"]
        assert {"type", "code", "message", "requestId"} <= set(error)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(POSTS), body=bodies)
async def test_signed_random_bodies(shop: SignedClient, path: str, body: dict[str, Any]) -> None:
    await _no_server_error(await shop.post(path, body))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(GETS), query=st.text(max_size=60))
async def test_signed_random_queries(shop: SignedClient, path: str, query: str) -> None:
    target = f"{path}?{quote(query, safe='=&')}" if query else path
    await _no_server_error(await shop.get(target))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300), headers=st.dictionaries(
    st.sampled_from(["Authorization", "X-Request-Timestamp", "X-Request-Nonce", "X-Signature",
                     "Idempotency-Key", "Content-Length", "Content-Type"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80), max_size=7))
async def test_unsigned_garbage(gw: InProcessGateway, raw: bytes, headers: dict[str, str]) -> None:
    headers.pop("Content-Length", None)
    for path in ("/api/v1/payment/intent", "/api/v1/payment/process"):
        await _no_server_error(await gw.http.post(path, content=raw, headers=headers))


async def test_deeply_nested_and_huge_numbers(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    nested = "[" * 2000 + '"x"' + "]" * 2000
    body = ('{"amount": 5, "currency": "USD", "productDetails": {"n": ' + nested + "}}").encode()
    await _no_server_error(await shop.post("/api/v1/payment/intent", body=body))
    for amount in ("1e400", "-0", "123456789012345678901234567890", "NaN"):
        raw = b'{"amount": ' + amount.encode() + b', "currency": "USD", "productDetails": {}}'
        await _no_server_error(await shop.post("/api/v1/payment/intent", body=raw))
    assert (await shop.get("/api/v1/payment/intents")).json()["data"] == []


async def test_an_unknown_parameter_is_named_only_if_it_is_a_plain_word(gw: InProcessGateway) -> None:
    """Once: ``unknown parameter: <the key as sent>`` echoed any key — a card number, a
    newline (a two-line message), up to 60 characters of anything — in message and param."""
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    hostile_keys = ("4111 1111 1111 1111", "a\nb", "x" * 61, "é", "1")
    for key in hostile_keys:
        for path, body in (("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"], key: 1}),
                           ("/checkout/v1/tokens", {"clientSecret": intent["clientSecret"], key: 1})):
            r = await (shop.post(path, body) if path.startswith("/api") else gw.http.post(path, json=body))
            assert r.status_code == 400, (path, key, r.text)
            error = r.json()["error"]
            assert key not in r.text and "\n" not in error["message"] and "param" not in error, (path, key, error)
            if error["code"] != "plaintext_card_data":  # the API's card check may come first
                assert (error["code"], error["message"]) == ("parameter_invalid", "unknown parameter"), error
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"], "status": "x"})
    assert r.json()["error"] | {"requestId": None} == {
        "type": "invalid_request_error", "code": "parameter_invalid", "message": "unknown parameter: status",
        "param": "status", "requestId": None}
    assert (await shop.get(f"/api/v1/payment/intent/{intent['paymentIntentId']}")).json()["status"] == "created"
