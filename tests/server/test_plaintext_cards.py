"""Plaintext card numbers through the HTTP API (SPEC §4, issue #15 items 1 and 2), on SQLite
and PostgreSQL: refused with ``400 plaintext_card_data``, never echoed, nothing stored.

Only the two real ciphertext positions let a JWE through: ``paymentDetails.encryptedCard``
of ``process`` and the top-level ``encryptedCard`` of ``POST /checkout/v1/tokens``.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from paygate_server.cards import contains_card_number
from paygate_server.storage.schema import (
    change_log,
    idempotency_keys,
    payment_intents,
    transactions,
)
from paygate_server.storage.schema_checkout import checkout_limits, vault_cards
from paygate_server.storage.schema_history import webhook_endpoints
from tests.server.checkout.helpers import encrypt
from tests.support.app import InProcessGateway
from tests.support.signing import SignedClient

INTENT = "/api/v1/payment/intent"
PROCESS = "/api/v1/payment/process"
TOKENS = "/checkout/v1/tokens"
MC = "5105105105105100"
# The card's digit groups as they must never appear in an answer.
GROUPS = ("5105", "1051", "0510", "5100")
# Prices whose digits, run together, pass Luhn (two separator families keep them apart).
PRICES = "24.99 35.99 12.99 45.00"
STORED = (payment_intents, transactions, change_log, idempotency_keys, vault_cards, checkout_limits,
          webhook_endpoints)


async def _row_counts(gw: InProcessGateway) -> dict[str, int]:
    async with gw.gateway.db.read() as conn:
        return {table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                for table in STORED}


def _assert_refused(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "plaintext_card_data"
    assert not any(group in response.text for group in GROUPS), response.text


def _intent_body(**overrides: Any) -> dict[str, Any]:
    return {"amount": 1999, "currency": "USD", "productDetails": {"sku": "mug-01"}, **overrides}


HOSTILE_INTENTS = {
    # Item 1: a key named encryptedCard is no hiding place.
    "productDetails.encryptedCard object": _intent_body(
        productDetails={"encryptedCard": {"number": MC, "cvc": "931"}}),
    "metadata.encryptedCard string": _intent_body(metadata={"encryptedCard": "5105 1051 0510 5100"}),
    "deep encryptedCard": _intent_body(productDetails={"a": [{"b": {"encryptedCard": MC}}]}),
    "top-level encryptedCard": _intent_body(encryptedCard=MC),
    # Item 2: separators and places.
    "two spaces": _intent_body(description="card 5105  1051  0510  5100"),
    "tab": _intent_body(metadata={"note": "5105\t1051\t0510\t5100"}),
    "no-break space": _intent_body(metadata={"note": "5105\u00a01051\u00a00510\u00a05100"}),
    "dots": _intent_body(description="paid with 5105.1051.0510.5100 today"),
    "slashes": _intent_body(productDetails={"ref": "5105/1051/0510/5100"}),
    "en dashes": _intent_body(description="5105\u20131051\u20130510\u20135100"),
    "zero-width spaces": _intent_body(description="5105\u200b1051\u200b0510\u200b5100"),
    "full-width digits": _intent_body(description=MC.translate(
        str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"))),
    "as a key": _intent_body(metadata={"5105.1051.0510.5100": "x"}),
}


@pytest.mark.parametrize("body", HOSTILE_INTENTS.values(), ids=HOSTILE_INTENTS.keys())
async def test_create_refuses_hidden_card_numbers_and_stores_nothing(gw: InProcessGateway, body: dict[str, Any]) -> None:
    shop = await gw.new_merchant()
    before = await _row_counts(gw)
    _assert_refused(await shop.post(INTENT, body, idempotency_key="create-1"))
    assert await _row_counts(gw) == before
    assert (await shop.get("/api/v1/payment/intents")).json()["data"] == []


async def test_webhook_urls_are_read_too(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    before = await _row_counts(gw)
    _assert_refused(await shop.post("/api/v1/webhooks", {"url": "https://shop.example/hook?c=5105.1051.0510.5100"}))
    assert await _row_counts(gw) == before


HOSTILE_DETAILS = {
    "object at the ciphertext position": {"encryptedCard": {"number": MC, "cvc": "931"}},
    "plain number at the ciphertext position": {"encryptedCard": "5105 1051 0510 5100"},
    "integer at the ciphertext position": {"encryptedCard": int(MC)},
    "list at the ciphertext position": {"encryptedCard": [MC]},
    "next to a token": {"token": "tok_x", "card": MC},
}


@pytest.mark.parametrize("details", HOSTILE_DETAILS.values(), ids=HOSTILE_DETAILS.keys())
async def test_process_lets_only_a_jwe_through_its_ciphertext_position(gw: InProcessGateway, details: Any) -> None:
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    before = await _row_counts(gw)
    body = {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": details}
    _assert_refused(await shop.post(PROCESS, body, idempotency_key="process-1"))
    assert await _row_counts(gw) == before
    assert len((await shop.get(f"{INTENT}/{pid}/history")).json()["data"]) == 1  # the creation only
    assert (await shop.get(f"{INTENT}/{pid}")).json()["status"] == "created"


async def test_process_reads_no_further_than_the_jwe_shape(gw: InProcessGateway) -> None:
    """A JWE-shaped string at paymentDetails.encryptedCard is left to decryption (the one
    generic parameter_invalid), even when a segment of it reads like a card number."""
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    header = encrypt(gw).split(".")[0]
    jwe = f"{header}.AAAA.{MC}.BBBB.CCCC"
    r = await shop.post(PROCESS, {"paymentIntentId": intent["paymentIntentId"], "paymentMethod": "card",
                                  "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid", r.text
    assert MC not in r.text


HOSTILE_TOKEN_BODIES = {
    "object": lambda secret, jwe: {"clientSecret": secret, "encryptedCard": {"number": MC, "cvc": "931"}},
    "plain number": lambda secret, jwe: {"clientSecret": secret, "encryptedCard": "5105.1051.0510.5100"},
    "list": lambda secret, jwe: {"clientSecret": secret, "encryptedCard": [jwe, MC]},
    "card as a key": lambda secret, jwe: {"clientSecret": secret, "encryptedCard": jwe, "5105\t1051\t0510\t5100": 1},
}


@pytest.mark.parametrize("make", HOSTILE_TOKEN_BODIES.values(), ids=HOSTILE_TOKEN_BODIES.keys())
async def test_tokens_lets_only_a_jwe_through_encrypted_card(gw: InProcessGateway, make: Any) -> None:
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    before = await _row_counts(gw)
    _assert_refused(await gw.http.post(TOKENS, json=make(intent["clientSecret"], encrypt(gw))))
    assert await _row_counts(gw) == before
    # The same intent still tokenizes a real JWE.
    r = await gw.http.post(TOKENS, json={"clientSecret": intent["clientSecret"], "encryptedCard": encrypt(gw, MC)})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "query",
    [
        quote(MC),  # a key with no value
        f"{quote('5105 1051 0510 5100')}=1",
        f"status={quote('5105  1051  0510  5100')}",
        f"status={quote(chr(0xa0).join(GROUPS))}",
        "status=5105.1051.0510.5100",
        "status=5105+1051+0510+5100",  # "+" is a space in a query string
        f"limit=10&{quote('5105/1051/0510/5100')}",
    ],
)
async def test_query_strings_are_read_keys_and_values(gw: InProcessGateway, query: str) -> None:
    shop: SignedClient = await gw.new_merchant()
    _assert_refused(await shop.get(f"/api/v1/payment/intents?{query}"))


async def test_ordinary_values_pass(gw: InProcessGateway) -> None:
    """The false positives the detector keeps out, through the API."""
    shop = await gw.new_merchant()
    metadata = {"phone": "+49 151 1234 5678", "at": "2024-10-15 14:22:31", "local": "25.12.2023 10.30.00",
                "stamp": "20240101000006", "order": "A-2024-10-15-00042", "prices": PRICES}
    assert contains_card_number("".join(ch for ch in PRICES if ch.isdigit()))  # the prices run together
    r = await shop.post(INTENT, _intent_body(metadata=metadata, description=json.dumps(metadata)))
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == metadata


@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/api/v1/payment/intent/{MC}"),
    ("GET", f"/api/v1/payment/intent/{quote('5105 1051 0510 5100')}/history"),
    ("DELETE", f"/api/v1/webhooks/{MC}"),
])
async def test_paths_are_read_too(gw: InProcessGateway, method: str, path: str) -> None:
    # SPEC §4: anything in a request that looks like a card number; a path segment is one
    # (it was 404 resource_missing, as a malformed id).
    shop: SignedClient = await gw.new_merchant()
    _assert_refused(await shop.request(method, path))
