"""An Adyen company-level webhook (SPEC §7; docs/processors.md, "Processor notifications"):
one URL, one HMAC key, the items of every merchant account of the company in its batches,
signed with the official ``Adyen`` library, through a gateway in this process (SQLite and
PostgreSQL).

A verified item for another merchant account than the URL's account's is no reason to
refuse the batch (Adyen would send it again for ever, the valid items with it): it is
applied for the account of the same merchant whose own key verifies it and whose merchant
account it names, else acknowledged and applied to nothing — never for an account of
another merchant, nor for one whose key does not verify it."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from Adyen import util as adyen_util

import paygate
from paygate_server.processors.accounts import add_account, set_routing
from tests.support.adyen_shop import APPROVE, HMAC_KEY
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.fake_adyen import FakeAdyen
from tests.support.http_stub import StubServer
from tests.support.signing import SignedClient

OTHER_KEY = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF"


@dataclass
class Account:
    id: str
    fake: FakeAdyen
    client: SignedClient
    currency: str

    @property
    def hook(self) -> str:
        return f"/processors/v1/{self.id}/webhooks"


@pytest.fixture
async def gw(database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with running_gateway(make_settings(database_url, tmp_path)) as g:
        yield g


@contextlib.asynccontextmanager
async def _accounts(gw: InProcessGateway) -> AsyncIterator[dict[str, Account]]:
    """Shop one's merchant accounts ShopECOM (EUR) and ShopUK (GBP) under the company key,
    ShopUS (USD) under a key of its own; shop two's OtherECOM under the company key."""
    one, two = await gw.new_merchant("Shop one"), await gw.new_merchant("Shop two")
    plan = {"ShopECOM": (one, "EUR", HMAC_KEY), "ShopUK": (one, "GBP", HMAC_KEY),
            "ShopUS": (one, "USD", OTHER_KEY), "OtherECOM": (two, "EUR", HMAC_KEY)}
    async with contextlib.AsyncExitStack() as stack:
        accounts = {}
        for code, (client, currency, key) in plan.items():
            fake = FakeAdyen(code, key)
            stub = await stack.enter_async_context(StubServer(fake.handler))
            row = await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=client.creds.merchant_id,
                                    kind="adyen", name=code, settings={"apiBase": stub.url, "merchantAccount": code},
                                    credentials={"apiKey": "test-api-key", "hmacKey": key})
            accounts[code] = Account(row.id, fake, client, currency)
        for client in (one, two):
            mine = [a for a in accounts.values() if a.client is client]
            await set_routing(gw.gateway.db, merchant_id=client.creds.merchant_id, document=[
                *({"when": {"currency": [a.currency]}, "use": [a.id]} for a in mine[:-1]), {"use": [mine[-1].id]}])
        yield accounts


async def _captured_later(gw: InProcessGateway, account: Account) -> tuple[str, dict[str, Any]]:
    """An authorization at ``account`` captured: the capture waits for its CAPTURE item."""
    client = account.client
    pid = (await client.create_intent(amount=5000, currency=account.currency,
                                      captureMethod="manual"))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=APPROVE, exp_month=12, exp_year=2034, cvc="123")
    paid = await client.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                         "paymentDetails": {"encryptedCard": jwe}})
    assert paid.status_code == 200 and paid.json()["status"] == "requires_capture", paid.text
    account.fake.queued.clear()
    captured = await client.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 5000})
    assert captured.status_code == 200, captured.text
    [item] = account.fake.queued
    account.fake.queued.clear()
    assert item["eventCode"] == "CAPTURE" and item["merchantAccountCode"] == account.fake.merchant_account
    return pid, item


def _signed(item: dict[str, Any], key: str) -> dict[str, Any]:
    unsigned = {**copy.deepcopy(item), "additionalData": {}}
    return {**unsigned, "additionalData": {
        "hmacSignature": adyen_util.generate_notification_sig(copy.deepcopy(unsigned), key).decode()}}


async def _status(account: Account, pid: str) -> tuple[str, int]:
    intent = (await account.client.get(f"/api/v1/payment/intent/{pid}")).json()
    return intent["status"], intent["amountReceived"]


async def test_a_company_webhook_batch_settles_each_item_at_its_own_account_only(
        gw: InProcessGateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="paygate.processors")
    async with _accounts(gw) as accounts:
        own, sibling, other_key, other_shop = (accounts[c] for c in ("ShopECOM", "ShopUK", "ShopUS", "OtherECOM"))
        captures = {code: await _captured_later(gw, account) for code, account in accounts.items()}
        for code, account in accounts.items():
            assert await _status(account, captures[code][0]) == ("in_progress", 0), code
        # Adyen's company webhook signs every item with the company key, whatever its merchant
        # account; plus one for a merchant account the gateway has no account of.
        stranger = {**captures["ShopECOM"][1], "merchantAccountCode": "StrangerECOM", "pspReference": "8815999999999999"}
        batch = [_signed(captures[code][1], HMAC_KEY) for code in ("OtherECOM", "ShopUK", "ShopUS", "ShopECOM")]
        batch.append(_signed(stranger, HMAC_KEY))
        body = {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in batch]}
        answer = await gw.http.post(own.hook, json=body)
        assert (answer.status_code, answer.text) == (200, "[accepted]")
        # The URL's account's item and its sibling's (same merchant, same key): settled.
        assert await _status(own, captures["ShopECOM"][0]) == ("succeeded", 5000)
        assert await _status(sibling, captures["ShopUK"][0]) == ("succeeded", 5000)
        # Same merchant, but that account's key does not verify the item: not applied.
        assert await _status(other_key, captures["ShopUS"][0]) == ("in_progress", 0)
        # Same key, but another merchant's account: never applied from this URL.
        assert await _status(other_shop, captures["OtherECOM"][0]) == ("in_progress", 0)
        ignored = [r.getMessage() for r in caplog.records if "applied to nothing" in r.getMessage()]
        assert len(ignored) == 3 and any("'StrangerECOM'" in m and "8815999999999999" in m for m in ignored)
        assert not any(HMAC_KEY in r.getMessage() or HMAC_KEY.lower() in r.getMessage() for r in caplog.records)
        # Each delivered to its own account's URL, with its own key, they settle as ever.
        for code in ("ShopUS", "OtherECOM"):
            account = accounts[code]
            key = OTHER_KEY if code == "ShopUS" else HMAC_KEY
            body = {"live": "false", "notificationItems": [{"NotificationRequestItem": _signed(captures[code][1], key)}]}
            answer = await gw.http.post(account.hook, json=body)
            assert (answer.status_code, answer.text) == (200, "[accepted]")
            assert await _status(account, captures[code][0]) == ("succeeded", 5000)


async def test_an_item_signed_with_another_key_still_refuses_the_batch(gw: InProcessGateway) -> None:
    async with _accounts(gw) as accounts:
        own, sibling = accounts["ShopECOM"], accounts["ShopUS"]
        pid, item = await _captured_later(gw, own)
        _, theirs = await _captured_later(gw, sibling)
        batch = [_signed(item, HMAC_KEY), _signed(theirs, OTHER_KEY)]  # ShopUS's own key: not the URL's
        body = {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in batch]}
        answer = await gw.http.post(own.hook, json=body)
        assert answer.status_code == 400
        assert await _status(own, pid) == ("in_progress", 0)
