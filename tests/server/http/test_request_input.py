"""Hardening #15.6: bad input gets 400, never a 500 — on SQLite and PostgreSQL alike.

Nesting past the bound, integers past 64 bits, non-ASCII digits in integer query parameters,
and NUL characters in any string of a body or a query are refused at parse time, before
anything is stored.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from paygate_server.http.request_input import MAX_JSON_DEPTH
from paygate_server.simulator.testing import start_simulator
from tests.server.checkout.helpers import encrypt
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.signing import SignedClient


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(tmp_path_factory.mktemp("simulator")) as url:
        yield url


@pytest.fixture
async def pgw(database_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[InProcessGateway]:
    async with running_gateway(settings_for(database_url, tmp_path, processor_url=simulator_url)) as g:
        yield g


def nested(levels: int) -> bytes:
    """JSON text of an object ``levels`` objects deep (built as text: json and orjson
    both refuse to serialise the deepest ones)."""
    return b'{"a":' * levels + b'"leaf"' + b"}" * levels


def deep_list(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def body_with(prefix: bytes, field: bytes, value: bytes) -> bytes:
    return b"{" + prefix + b'"' + field + b'":' + value + b"}"


CREATE = b'"amount":100,"currency":"USD",'


def _refused(r: Any, code: str = "parameter_invalid", param: str | None = None) -> None:
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    if param is not None:
        assert error.get("param") == param, error


async def _intent_count(shop: SignedClient) -> int:
    r = await shop.get("/api/v1/payment/intents?limit=100")
    assert r.status_code == 200, r.text
    return len(r.json()["data"])


async def test_nesting_is_bounded_at_parse_time(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    # The body is level 1, so productDetails may nest MAX_JSON_DEPTH - 1 levels.
    ok = await shop.post("/api/v1/payment/intent",
                         body=body_with(CREATE, b"productDetails", nested(MAX_JSON_DEPTH - 1)))
    assert ok.status_code == 201, ok.text
    # Just past the bound; past what orjson serialises (255..1023, a 500 before); arrays too.
    for details in (nested(MAX_JSON_DEPTH), nested(300), nested(1000), b'{"list":' + deep_list(400) + b"}"):
        r = await shop.post("/api/v1/payment/intent", body=body_with(CREATE, b"productDetails", details))
        _refused(r, param="productDetails")
    assert await _intent_count(shop) == 1  # nothing but the first was stored
    # Every endpoint parses the same way, the checkout's too.
    for path in ("/api/v1/payment/refund", "/api/v1/payment/cancel", "/api/v1/webhooks"):
        _refused(await shop.post(path, body=body_with(b"", b"x", nested(600))))
    r = await gw.http.post("/checkout/v1/tokens", content=body_with(b'"encryptedCard":"x",', b"clientSecret", nested(600)),
                           headers={"Content-Type": "application/json"})
    _refused(r)


async def test_an_integer_past_64_bits_is_refused_at_parse_time(gw: InProcessGateway) -> None:
    """The codec reads such an integer exactly and cannot write it back: a productDetails
    holding one passed validation and was a 500 when stored (the hostile API fuzz's bodies
    can draw one: its integers reach 2**70)."""
    shop = await gw.new_merchant()
    for number in (2**64, 10**30, -(2**63) - 1, 10**300):
        for details in (b'{"n":%d}' % number, b'{"list":[1,{"deep":%d}]}' % number):
            r = await shop.post("/api/v1/payment/intent", body=body_with(CREATE, b"productDetails", details))
            _refused(r, param="productDetails")
            assert str(number) not in r.text
        _refused(await shop.post("/api/v1/payment/intent", body=body_with(b'"currency":"USD","productDetails":{},',
                                                                           b"amount", b"%d" % number)), param="amount")
    assert await _intent_count(shop) == 0
    # The edges of what the codec writes are kept as written.
    details = b'{"max":%d,"min":%d,"rate":1.5}' % (2**64 - 1, -(2**63))
    ok = await shop.post("/api/v1/payment/intent", body=body_with(CREATE, b"productDetails", details))
    assert ok.status_code == 201, ok.text
    assert ok.json()["productDetails"] == {"max": 2**64 - 1, "min": -(2**63), "rate": 1.5}
    read = await shop.get(f"/api/v1/payment/intent/{ok.json()['paymentIntentId']}")
    assert read.json()["productDetails"] == {"max": 2**64 - 1, "min": -(2**63), "rate": 1.5}
    r = await gw.http.post("/checkout/v1/tokens", content=body_with(b'"encryptedCard":"x",', b"clientSecret",
                                                                    b"%d" % 10**30),
                           headers={"Content-Type": "application/json"})
    _refused(r, param="clientSecret")


@pytest.mark.parametrize("query", [
    "limit=%C2%B2",              # "²": isdigit() but int() refuses it
    "limit=%D9%A3",              # "٣" (Arabic-Indic three): int() reads it as 3
    "limit=" + "9" * 5000,       # past int()'s 4300-digit limit
    "limit=-1", "limit=1.0",
])
async def test_integer_query_parameters_take_ascii_digits_only(gw: InProcessGateway, query: str) -> None:
    shop = await gw.new_merchant()
    _refused(await shop.get(f"/api/v1/payment/intents?{query}"), param="limit")


async def test_wait_takes_ascii_digits_only(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    for wait in ("%C2%B3", "%D9%A3", "1" * 5000):
        r = await shop.get(f"/api/v1/payment/status?paymentIntentId={intent['paymentIntentId']}&wait={wait}")
        _refused(r, param="wait")


async def test_nul_is_refused_in_every_string_of_a_create(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    base = {"amount": 100, "currency": "USD", "productDetails": {"sku": "mug"}}
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"description": "a\x00b"}, "description"),
        ({"metadata": {"order": "1\x00"}}, "metadata"),
        ({"metadata": {"or\x00der": "1"}}, "metadata"),
        ({"productDetails": {"deep": [{"name": "\x00"}]}}, "productDetails"),
        ({"productDetails": {"deep": {"k\x00": 1}}}, "productDetails"),
        ({"descr\x00iption": "x"}, None),
    ]
    for extra, param in cases:
        r = await shop.post("/api/v1/payment/intent", base | extra)
        _refused(r, param=param)
        assert "\x00" not in r.text and "\\u0000" not in r.json()["error"].get("param", "")
    # An escaped backslash followed by "u0000" is not a NUL: accepted as text.
    r = await shop.post("/api/v1/payment/intent", base | {"description": "C:\\u0000"})
    assert r.status_code == 201, r.text
    assert r.json()["description"] == "C:\\u0000"
    assert await _intent_count(shop) == 1


async def test_nul_is_refused_in_webhook_urls_and_queries(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    _refused(await shop.post("/api/v1/webhooks", {"url": "https://shop.example/hook\x00"}), param="url")
    r = await shop.get("/api/v1/webhooks")
    assert r.status_code == 200 and r.json()["data"] == [], r.text
    for query in ("status=%00", "startingAfter=pi_%00", "st%00atus=created", "limit=1%00"):
        r = await shop.get(f"/api/v1/payment/intents?{query}")
        assert r.status_code == 400, (query, r.text)
        assert r.json()["error"]["code"] == "parameter_invalid"
    # In the path: named as the API names the id (camelCase), not as the route does.
    for path, param in (("/api/v1/payment/intent/pi_%00", "paymentIntentId"),
                        ("/api/v1/payment/intent/pi_%00/history", "paymentIntentId")):
        r = await shop.get(path)
        assert (r.status_code, r.json()["error"].get("param")) == (400, param), (path, r.text)
    r = await shop.request("DELETE", "/api/v1/webhooks/we_%00")
    assert (r.status_code, r.json()["error"].get("param")) == (400, "webhookEndpointId"), r.text


async def test_nul_in_a_refund_reason_is_refused_and_nothing_is_refunded(pgw: InProcessGateway) -> None:
    shop = await pgw.new_merchant()
    intent = await shop.create_intent(amount=500)
    intent_id = intent["paymentIntentId"]
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": intent_id, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": encrypt(pgw)}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": intent_id, "reason": "dup\x00licate"})
    _refused(r, param="reason")
    r = await shop.get(f"/api/v1/payment/intent/{quote(intent_id)}")
    assert r.json()["amountRefunded"] == 0
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": intent_id, "reason": "duplicate"})
    assert r.status_code == 200 and r.json()["amount"] == 500, r.text
