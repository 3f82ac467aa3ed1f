"""``process`` with ``paymentDetails.token`` through the signed API, against a real
simulator: single use, binding, expiry, idempotent retries, the CVC's end, and the
10-failed-attempts limit."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from paygate_server.processing.service import MAX_FAILED_ATTEMPTS
from paygate_server.simulator.testing import TestCards
from paygate_server.storage.schema import transactions
from tests.server.checkout.helpers import tokenize, vault_row
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.eventually import eventually
from tests.support.signing import SignedClient

PROCESS = "/api/v1/payment/process"


async def _token(gw: InProcessGateway, intent: dict[str, Any], number: str = TestCards.VISA) -> str:
    r = await tokenize(gw, intent["clientSecret"], number)
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def _process(shop: SignedClient, intent_id: str, token: str, **kw: Any) -> Any:
    return await shop.post(PROCESS, {"paymentIntentId": intent_id, "paymentMethod": "card",
                                     "paymentDetails": {"token": token}}, **kw)


async def test_token_pays_once_and_the_cvc_goes(pgw: InProcessGateway) -> None:
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    token = await _token(pgw, intent)
    r = await _process(shop, pid, token)
    assert r.status_code == 200, r.text
    assert r.json()["card"] == {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
    assert (await shop.final_status(pid))["status"] == "succeeded"
    # The CVC is dropped once the authorization has an outcome.
    await eventually(lambda: _cvc_gone(pgw, pid), timeout=10, what="the CVC to be dropped")
    row = await vault_row(pgw, intent_id=pid)
    assert row.used_at is not None and row.pan_sealed is not None

    # Reused: refused, and nothing reaches the processor.
    again = await _process(shop, pid, token)
    assert again.status_code == 400 and again.json()["error"]["code"] == "token_invalid"
    assert again.json()["error"]["param"] == "paymentDetails.token"


async def _cvc_gone(gw: InProcessGateway, intent_id: str) -> bool:
    row = await vault_row(gw, intent_id=intent_id)
    return row is not None and row.cvc_sealed is None


async def test_token_of_another_intent_or_merchant_is_refused(pgw: InProcessGateway) -> None:
    shop, stranger = await pgw.new_merchant(), await pgw.new_merchant()
    mine, other_mine, theirs = await shop.create_intent(), await shop.create_intent(), await stranger.create_intent()
    token = await _token(pgw, mine)
    for client, intent in ((shop, other_mine), (stranger, theirs)):
        r = await _process(client, intent["paymentIntentId"], token)
        assert r.status_code == 400 and r.json()["error"]["code"] == "token_invalid", r.text
    # Another merchant naming the right intent does not learn it exists, nor consume the token.
    r = await _process(stranger, mine["paymentIntentId"], token)
    assert r.status_code == 400 and r.json()["error"]["code"] == "token_invalid"
    r = await _process(shop, mine["paymentIntentId"], token)
    assert r.status_code == 200 and r.json()["status"] in ("in_progress", "succeeded")


async def test_idempotent_retry_with_a_used_token_replays(pgw: InProcessGateway) -> None:
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    token = await _token(pgw, intent)
    first = await _process(shop, pid, token, idempotency_key="order-1042-pay")
    assert first.status_code == 200
    retry = await _process(shop, pid, token, idempotency_key="order-1042-pay")
    assert retry.status_code == 200 and retry.headers.get("idempotent-replayed") == "true"
    assert retry.json()["paymentIntentId"] == pid
    # Without the key, or with a new one, the used token is refused; nothing was stored for it.
    for key in (None, "order-1042-other"):
        r = await _process(shop, pid, token, idempotency_key=key)
        assert r.status_code == 400 and r.json()["error"]["code"] == "token_invalid"
    fresh = await _token(pgw, await shop.create_intent())
    r = await _process(shop, pid, fresh, idempotency_key="order-1042-other")
    assert r.json()["error"]["code"] == "token_invalid"  # not a stored replay of the first refusal


@pytest.fixture
async def short_ttl_pgw(database_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[InProcessGateway]:
    settings = settings_for(database_url, tmp_path, processor_url=simulator_url, token_ttl_s=0.3)
    async with running_gateway(settings) as g:
        yield g


async def test_expired_token_is_refused(short_ttl_pgw: InProcessGateway) -> None:
    gw = short_ttl_pgw
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    token = await _token(gw, intent)
    row = await vault_row(gw, intent_id=intent["paymentIntentId"])

    async def expired() -> bool:
        return time.time_ns() // 1000 > row.expires_at

    await eventually(expired, timeout=10, what="the token's expiry")
    r = await _process(shop, intent["paymentIntentId"], token)
    assert r.status_code == 400 and r.json()["error"]["code"] == "token_invalid"


async def test_ten_failed_attempts_then_rate_limited(pgw: InProcessGateway) -> None:
    assert MAX_FAILED_ATTEMPTS == 10  # SPEC §5's number, not only whatever the constant says
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    spare = await _token(pgw, intent)  # made before the limit is reached
    for attempt in range(MAX_FAILED_ATTEMPTS):
        r = await _process(shop, pid, await _token(pgw, intent, TestCards.GENERIC_DECLINE))
        assert r.status_code == 200, (attempt, r.text)
        assert (await shop.final_status(pid))["status"] == "failed"
    r = await _process(shop, pid, spare)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["retry-after"]) > 0
    # The checkout refuses the intent too.
    r = await pgw.http.post("/checkout/v1/tokens", json={"clientSecret": intent["clientSecret"],
                                                         "encryptedCard": "x"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    frame = await pgw.http.get("/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
    assert frame.status_code == 429 and "Too many attempts" in frame.text


async def test_a_refused_process_does_not_burn_the_token(pgw: InProcessGateway) -> None:
    """#15.8: a second token sent with a used Idempotency-Key gets 422 and stays redeemable."""
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    declined = await _token(pgw, intent, TestCards.GENERIC_DECLINE)
    assert (await _process(shop, pid, declined, idempotency_key="pay-1")).status_code == 200
    assert (await shop.final_status(pid))["status"] == "failed"  # processable again
    second = await _token(pgw, intent)
    r = await _process(shop, pid, second, idempotency_key="pay-1")
    assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused", r.text
    assert (await vault_row(pgw, intent_id=pid, last4="4242")).used_at is None
    r = await _process(shop, pid, second, idempotency_key="pay-2")
    assert r.status_code == 200, r.text
    assert (await shop.final_status(pid))["status"] == "succeeded"


async def test_a_retry_racing_the_original_never_burns_or_refuses(pgw: InProcessGateway) -> None:
    """#15.8: the original is held after its card was read and before its attempt; its
    retry (same key, same token) runs the payment, and the original then replays that
    answer — no token_invalid, no 409 after a consumed token, one attempt."""
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    token = await _token(pgw, intent)
    service = pgw.gateway.processing
    real_process = service.process
    held, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def process(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the original: hold it at the point between its card and its attempt
            held.set()
            await release.wait()
        return await real_process(*args, **kw)

    service.process = process
    try:
        original = asyncio.create_task(_process(shop, pid, token, idempotency_key="order-7"))
        async with asyncio.timeout(10):
            await held.wait()
        retry = await _process(shop, pid, token, idempotency_key="order-7")
        assert retry.status_code == 200, retry.text
        release.set()
        first = await original
    finally:
        service.process = real_process
        release.set()
    assert first.status_code == 200, first.text
    assert first.headers.get("idempotent-replayed") == "true" and first.content == retry.content
    async with pgw.gateway.db.read() as conn:
        attempts = (await conn.execute(select(transactions.c.id).where(transactions.c.intent_id == pid))).all()
    assert len(attempts) == 1
    assert (await shop.final_status(pid))["status"] == "succeeded"


@pytest.mark.parametrize("token", [42, None, ["tok_x"], {"id": "tok_x"}, True])
async def test_a_token_that_is_not_a_string_is_a_malformed_request(pgw: InProcessGateway, token: Any) -> None:
    # Not a token that cannot be used (token_invalid) but a request of the wrong shape.
    shop = await pgw.new_merchant()
    intent = await shop.create_intent()
    r = await _process(shop, intent["paymentIntentId"], token)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "parameter_invalid" and r.json()["error"]["param"] == "paymentDetails.token"
