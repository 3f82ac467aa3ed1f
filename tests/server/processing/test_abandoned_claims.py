"""A request cut off after its first phase committed (its process died, or a later write
failed) leaves its Idempotency-Key ``in_progress``. Past the lock timeout, the retry with that
key is answered with what the first request began, as it is now — the intent, or the refund —
and never begins it a second time: a second refund reserved under one key would be money
paid out twice (docs/api.md, "Idempotency"). And a refund whose account cannot be used: not
a 500 that leaves its key abandoned, but refused with nothing sent."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.checkout.helpers import tokenize
from tests.server.processing.scripted import ScriptedProcessor, process_body, scripted
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.signing import SignedClient


class CutOff(Exception):
    """The request's end, right after its first phase committed."""


@pytest.fixture
async def gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    # A lock timeout of 0: a claim is abandoned as soon as its holder stops (instead of 90 s).
    async with running_gateway(settings_for(fresh_database_url, tmp_path, idempotency_lock_timeout_s=0)) as g:
        yield g


@pytest.fixture
def processor(gw: InProcessGateway) -> ScriptedProcessor:
    return scripted(gw)


def _cut_off_after(gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """The store's ``method`` commits, then the request ends (once)."""
    store = gw.gateway.payments
    original = getattr(store, method)

    async def then_cut_off(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        monkeypatch.setattr(store, method, original)
        raise CutOff(method)

    monkeypatch.setattr(store, method, then_cut_off)


async def _cut_off(shop: SignedClient, path: str, body: dict[str, Any], key: str) -> None:
    """The request, cut off: the client got a 500 (or, had the process died, nothing)."""
    r = await shop.post(path, body, idempotency_key=key)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"


async def _paid(gw: InProcessGateway, shop: SignedClient, capture_method: str = "automatic") -> str:
    pid: str = (await shop.create_intent(captureMethod=capture_method))["paymentIntentId"]
    r = await shop.post("/api/v1/payment/process", process_body(gw, pid))
    assert r.status_code == 200, r.text
    return pid


async def _is_answered_again(shop: SignedClient, path: str, body: dict[str, Any], key: str,
                             answer: Any) -> None:
    again = await shop.post(path, body, idempotency_key=key)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == answer.json()


async def test_a_refund_cut_off_is_answered_with_its_refund_never_a_second(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    pid = await _paid(gw, shop)
    body = {"paymentIntentId": pid, "amount": 300}
    _cut_off_after(gw, monkeypatch, "reserve_refund")
    await _cut_off(shop, "/api/v1/payment/refund", body, "refund-1")
    retry = await shop.post("/api/v1/payment/refund", body, idempotency_key="refund-1")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "pending"  # never sent: the reconciler's to send
    assert processor.calls["refund"] == 0
    intent = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert intent["amountRefunded"] == 300  # one refund reserved, not two
    await _is_answered_again(shop, "/api/v1/payment/refund", body, "refund-1", retry)


async def test_a_payment_cut_off_is_answered_with_its_intent_never_begun_again(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    body = process_body(gw, pid)
    _cut_off_after(gw, monkeypatch, "begin_attempt")
    await _cut_off(shop, "/api/v1/payment/process", body, "pay-1")
    retry = await shop.post("/api/v1/payment/process", body, idempotency_key="pay-1")
    assert retry.status_code == 200, retry.text  # not 409 intent_state_conflict
    assert retry.json()["paymentIntentId"] == pid and retry.json()["status"] == "in_progress"
    assert processor.calls["charge"] == 0  # the attempt is the reconciler's to settle
    [check] = [c for c in await gw.gateway.payments.all_checks() if c.intent_id == pid]
    assert check.kind == "charge"  # one attempt, on the queue
    await _is_answered_again(shop, "/api/v1/payment/process", body, "pay-1", retry)


async def test_a_capture_cut_off_is_answered_with_its_intent_never_begun_again(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    pid = await _paid(gw, shop, "manual")
    body = {"paymentIntentId": pid, "amount": 500}
    _cut_off_after(gw, monkeypatch, "begin_capture")
    await _cut_off(shop, "/api/v1/payment/capture", body, "capture-1")
    retry = await shop.post("/api/v1/payment/capture", body, idempotency_key="capture-1")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "in_progress"
    assert processor.calls["capture"] == 0
    await _is_answered_again(shop, "/api/v1/payment/capture", body, "capture-1", retry)


async def test_a_token_payment_cut_off_is_answered_with_its_intent_though_its_token_is_spent(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    # The attempt consumed the token: the retry's token no longer resolves, and the key,
    # judged without a claim, answers for it (not token_invalid).
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    tokenized = await tokenize(gw, intent["clientSecret"], "4242424242424242")
    assert tokenized.status_code == 200, tokenized.text
    body = {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"token": tokenized.json()["token"]}}
    _cut_off_after(gw, monkeypatch, "begin_attempt")
    await _cut_off(shop, "/api/v1/payment/process", body, "pay-token")
    retry = await shop.post("/api/v1/payment/process", body, idempotency_key="pay-token")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "in_progress" and processor.calls["charge"] == 0
    await _is_answered_again(shop, "/api/v1/payment/process", body, "pay-token", retry)
    other = await shop.post("/api/v1/payment/process", body, idempotency_key="another-key")
    assert other.status_code == 400 and other.json()["error"]["code"] == "token_invalid"


async def test_a_refund_whose_account_cannot_be_used_is_refused_not_a_500(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    # As a charge's: an account that cannot be built (its row gone, a kind this version
    # does not know) was sent nothing — the refund is refused and its amount released.
    from paygate_server.processors.registry import AccountMissing

    shop = await gw.new_merchant()
    pid = await _paid(gw, shop)

    async def unusable(route: str, default: Any) -> Any:
        raise AccountMissing(route)

    monkeypatch.setattr(gw.gateway.processors, "connector", unusable)
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 300}, idempotency_key="re-1")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "failed" and processor.calls["refund"] == 0
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["amountRefunded"] == 0
    assert [c for c in await gw.gateway.payments.all_checks() if c.intent_id == pid] == []
