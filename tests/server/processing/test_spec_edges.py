"""SPEC §2–§4 claims at their edges, over the signed API with a processor the test drives:
``409 idempotency_request_in_progress`` while a request under the key is at the processor,
a ``429`` that keeps its ``Retry-After`` on a retry under its key, capture's
``1 <= amount <= amountCapturable`` at the upper bound, refund ``reason`` at 0, 200 and
201 characters; the status stream ending at ``requires_capture``; SPEC §7's attempt
committed ``pending`` with its reference before the processor is called."""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
)
from paygate_server.processing.service import MAX_FAILED_ATTEMPTS
from paygate_server.storage.schema import payment_intents, transactions
from tests.server.processing.scripted import ScriptedProcessor, process_body, scripted
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually
from tests.support.signing import SignedClient

PROCESS, CAPTURE, REFUND = "/api/v1/payment/process", "/api/v1/payment/capture", "/api/v1/payment/refund"


@pytest.fixture
def processor(gw: InProcessGateway) -> ScriptedProcessor:
    return scripted(gw)


async def _processed(gw: InProcessGateway, shop: SignedClient, amount: int = 5000, **extra: Any) -> dict[str, Any]:
    pid = (await shop.create_intent(amount=amount, **extra))["paymentIntentId"]
    r = await shop.post(PROCESS, process_body(gw, pid))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_retry_while_the_first_is_at_the_processor_is_409_in_progress(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = await gw.new_merchant()
    pid = (await _processed(gw, shop))["paymentIntentId"]
    at_processor, release = asyncio.Event(), asyncio.Event()
    answer = processor.refund

    async def held(request: RefundRequest) -> RefundResult:
        at_processor.set()
        await release.wait()
        return await answer(request)

    monkeypatch.setattr(processor, "refund", held)
    body = {"paymentIntentId": pid, "amount": 700}
    first = asyncio.create_task(shop.post(REFUND, body, idempotency_key="refund-1"))
    await asyncio.wait_for(at_processor.wait(), 10)
    try:
        during = await shop.post(REFUND, body, idempotency_key="refund-1")
        assert during.status_code == 409, during.text
        error = during.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "idempotency_request_in_progress")
        other = await shop.post(REFUND, {**body, "amount": 701}, idempotency_key="refund-1")
        assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused", other.text
    finally:
        release.set()
    done = await asyncio.wait_for(first, 10)
    assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
    again = await shop.post(REFUND, body, idempotency_key="refund-1")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == done.json()
    assert processor.calls["refund"] == 1
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["amountRefunded"] == 700


async def test_a_rate_limited_retry_under_its_key_still_says_when_to_retry(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    # SPEC §2: 429 rate_limited comes with Retry-After. A stored 429 was replayed without it
    # (a replay carries only the stored status and body).
    processor.charge_outcome = ChargeOutcome.DECLINED
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    body = process_body(gw, pid)
    for _ in range(MAX_FAILED_ATTEMPTS):
        assert (await shop.post(PROCESS, body)).json()["status"] == "failed"
    for _ in range(2):
        r = await shop.post(PROCESS, body, idempotency_key="pay-11")
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
        assert int(r.headers["retry-after"]) > 0
    assert processor.calls["charge"] == MAX_FAILED_ATTEMPTS


async def test_capture_takes_exactly_what_is_capturable_and_not_one_more(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    shop = await gw.new_merchant()
    held = await _processed(gw, shop, 5000, captureMethod="manual")
    pid = held["paymentIntentId"]
    assert (held["status"], held["amountCapturable"]) == ("requires_capture", 5000)
    over = await shop.post(CAPTURE, {"paymentIntentId": pid, "amount": 5001})
    assert over.status_code == 400, over.text
    assert (over.json()["error"]["code"], over.json()["error"]["param"]) == ("parameter_invalid", "amount")
    assert processor.calls["capture"] == 0
    still = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (still["status"], still["amountCapturable"], still["amountReceived"]) == ("requires_capture", 5000, 0)
    r = await shop.post(CAPTURE, {"paymentIntentId": pid, "amount": 5000})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["amountCapturable"], r.json()["amountReceived"]) == ("succeeded", 0, 5000)


async def test_refund_reason_is_free_text_of_at_most_200_characters(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    shop = await gw.new_merchant()
    pid = (await _processed(gw, shop, 5000))["paymentIntentId"]
    for reason in ("r" * 201, 5, ["damaged"]):
        r = await shop.post(REFUND, {"paymentIntentId": pid, "amount": 1, "reason": reason})
        assert r.status_code == 400, r.text
        assert (r.json()["error"]["code"], r.json()["error"]["param"]) == ("parameter_invalid", "reason")
    assert processor.calls["refund"] == 0
    # 0 characters is "at most 200" too (a merchant's form left empty).
    for reason in ("r" * 200, "é" * 200, ""):
        r = await shop.post(REFUND, {"paymentIntentId": pid, "amount": 1, "reason": reason})
        assert r.status_code == 200, r.text
        assert r.json()["reason"] == reason
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["amountRefunded"] == 3


def _sse_statuses(text: str) -> list[str]:
    return [json.loads(line.removeprefix("data: "))["status"] for line in text.splitlines() if line.startswith("data: ")]


async def test_the_status_stream_sends_each_change_and_ends_at_requires_capture(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent(captureMethod="manual"))["paymentIntentId"]
    target = f"/api/v1/payment/status/stream?paymentIntentId={pid}"
    # The in-process transport hands the answer over once the stream has ended: it ends by itself.
    stream = asyncio.create_task(shop.get(target))
    await eventually(lambda: gw.gateway.notifier.waiter_count, interval=0.005, what="the stream to subscribe")
    r = await shop.post(PROCESS, process_body(gw, pid))
    assert r.status_code == 200 and r.json()["status"] == "requires_capture", r.text
    answered = await asyncio.wait_for(stream, 10)
    assert answered.status_code == 200 and answered.headers["content-type"].startswith("text/event-stream")
    statuses = _sse_statuses(answered.text)
    assert statuses[0] == "created" and statuses[-1] == "requires_capture", statuses
    assert all(a != b for a, b in itertools.pairwise(statuses)), statuses  # one event per change
    # Resting: one event, at once. Another merchant's intent: 404 before any stream.
    assert _sse_statuses((await asyncio.wait_for(shop.get(target), 5)).text) == ["requires_capture"]
    other = await gw.new_merchant()
    r = await other.get(target)
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"


async def test_cancel_takes_created_failed_and_requires_capture_only(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §4: ``409 intent_state_conflict`` unless created/failed/requires_capture."""
    shop = await gw.new_merchant()

    async def cancel(pid: str) -> Any:
        return await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})

    processor.charge_outcome = ChargeOutcome.DECLINED
    failed = await _processed(gw, shop)
    assert failed["status"] == "failed"
    r = await cancel(failed["paymentIntentId"])
    assert r.status_code == 200, r.text
    # "requested" is a hold voided at the merchant's request; nothing was held here (docs/api.md).
    assert (r.json()["status"], r.json()["cancellationReason"]) == ("canceled", None)

    processor.charge_outcome = ChargeOutcome.APPROVED
    succeeded = await _processed(gw, shop)
    assert succeeded["status"] == "succeeded"
    # At the processor, no answer yet: in_progress (the request's wait budget is short here).
    monkeypatch.setattr(gw.gateway, "settings", dataclasses.replace(gw.gateway.settings, process_wait_budget_s=0.2))
    release = asyncio.Event()
    answer = processor.charge

    async def held(request: ChargeRequest) -> ChargeResult:
        await release.wait()
        return await answer(request)

    monkeypatch.setattr(processor, "charge", held)
    try:
        in_progress = await _processed(gw, shop)
        assert in_progress["status"] == "in_progress"
        for intent in (succeeded, in_progress):
            r = await cancel(intent["paymentIntentId"])
            assert r.status_code == 409 and r.json()["error"]["code"] == "intent_state_conflict", r.text
            assert (await shop.get(f"/api/v1/payment/intent/{intent['paymentIntentId']}")).json()["status"] == \
                intent["status"]
    finally:
        release.set()
    assert processor.calls["void"] == 0


async def test_concurrent_refunds_of_a_partial_capture_stay_within_what_was_received(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """SPEC §4: total refunds never exceed ``amountReceived`` — here less than ``amount``."""
    shop = await gw.new_merchant()
    pid = (await _processed(gw, shop, 5000, captureMethod="manual"))["paymentIntentId"]
    captured = await shop.post(CAPTURE, {"paymentIntentId": pid, "amount": 3000})
    assert captured.json()["amountReceived"] == 3000, captured.text
    answers = await asyncio.gather(*(shop.post(REFUND, {"paymentIntentId": pid, "amount": 700}) for _ in range(20)))
    assert sorted(r.status_code for r in answers) == [200] * 4 + [400] * 16
    assert {r.json()["error"]["param"] for r in answers if r.status_code == 400} == {"amount"}
    assert processor.calls["refund"] == 4
    rest = await shop.post(REFUND, {"paymentIntentId": pid})  # what remains, by default
    assert rest.status_code == 200 and rest.json()["amount"] == 200, rest.text
    intent = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (intent["amountReceived"], intent["amountRefunded"], intent["status"]) == (3000, 3000, "succeeded")


async def test_a_capture_refused_with_nothing_changed_returns_to_requires_capture(
        gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """SPEC §4: a capture the processor refuses with nothing changed returns the intent to
    ``requires_capture`` with ``lastError``; the hold is still there to capture."""
    shop = await gw.new_merchant()
    pid = (await _processed(gw, shop, 5000, captureMethod="manual"))["paymentIntentId"]
    processor.follow_up_outcome = ChargeOutcome.FAILED
    r = await shop.post(CAPTURE, {"paymentIntentId": pid, "amount": 4000})
    assert r.status_code == 200, r.text
    refused = r.json()
    assert (refused["status"], refused["amountCapturable"], refused["amountReceived"]) == ("requires_capture", 5000, 0)
    assert refused["lastError"]["code"] == "processing_error" and refused["lastError"]["message"]
    assert refused["cancellationReason"] is None
    processor.follow_up_outcome = ChargeOutcome.APPROVED
    r = await shop.post(CAPTURE, {"paymentIntentId": pid})
    assert (r.json()["status"], r.json()["amountReceived"], r.json()["lastError"]) == ("succeeded", 5000, None)
    assert processor.calls["capture"] == 2


async def test_the_attempt_is_committed_pending_with_its_reference_before_the_processor_is_called(
        gw: InProcessGateway, processor: ScriptedProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §7: before calling the processor the gateway commits the attempt (``txn_…``,
    ``pending``, with its reference), and the call carries that reference; a new card is a
    new attempt with a new reference. Read from another connection while the processor
    holds the call: only what is committed is seen."""
    shop = await gw.new_merchant()
    pid = (await shop.create_intent(amount=1234))["paymentIntentId"]
    seen: list[tuple[str, Any, Any]] = []
    answer = processor.charge

    async def looking(request: ChargeRequest) -> ChargeResult:
        async with gw.gateway.db.read() as conn:
            attempt = (await conn.execute(select(transactions.c.id, transactions.c.status, transactions.c.intent_id)
                                          .where(transactions.c.reference == request.reference))).one_or_none()
            intent = (await conn.execute(select(payment_intents.c.status)
                                         .where(payment_intents.c.id == pid))).scalar_one()
        seen.append((request.reference, attempt, intent))
        return await answer(request)

    monkeypatch.setattr(processor, "charge", looking)
    processor.charge_outcome = ChargeOutcome.DECLINED
    assert (await shop.post(PROCESS, process_body(gw, pid))).json()["status"] == "failed"
    processor.charge_outcome = ChargeOutcome.APPROVED
    assert (await shop.post(PROCESS, process_body(gw, pid))).json()["status"] == "succeeded"
    assert len(seen) == 2 and seen[0][0] != seen[1][0]  # the second card: a new attempt, a new reference
    for _reference, attempt, intent in seen:
        assert attempt is not None and attempt.id.startswith("txn_")
        assert (attempt.status, attempt.intent_id, intent) == ("pending", pid, "in_progress")


async def test_failed_is_not_where_a_wait_or_a_stream_stops(gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """SPEC §4: ``failed`` is not final (the intent may be processed again with another
    card): a long-poll on a failed intent holds until the next change, and the status
    stream goes on past ``failed`` to end at ``succeeded``."""
    shop = await gw.new_merchant()
    processor.charge_outcome = ChargeOutcome.DECLINED
    failed = await _processed(gw, shop)
    pid = failed["paymentIntentId"]
    assert failed["status"] == "failed"
    poll = asyncio.create_task(shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=30"))
    stream = asyncio.create_task(shop.get(f"/api/v1/payment/status/stream?paymentIntentId={pid}"))
    await eventually(lambda: gw.gateway.notifier.waiter_count >= 2, interval=0.005, what="both to wait")
    assert not poll.done() and not stream.done()  # the in-process transport answers a stream once it ended
    processor.charge_outcome = ChargeOutcome.APPROVED
    r = await shop.post(PROCESS, process_body(gw, pid))
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    assert (await asyncio.wait_for(poll, 10)).json()["status"] in {"in_progress", "succeeded"}
    statuses = _sse_statuses((await asyncio.wait_for(stream, 10)).text)
    assert statuses[0] == "failed" and statuses[-1] == "succeeded", statuses


_CAMEL = re.compile(r"[a-z][a-zA-Z0-9]*")


def _names(value: Any, where: str = "") -> list[tuple[str, str]]:
    """Every object key in an answer, with where it is; the merchant's own free-form JSON
    (``metadata``, ``productDetails``) is theirs to name."""
    if isinstance(value, list):
        return [n for item in value for n in _names(item, where + "[]")]
    if not isinstance(value, dict):
        return []
    return [(where, key) for key in value] + [
        n for key, item in value.items() if key not in ("metadata", "productDetails") for n in _names(item, f"{where}.{key}")]


# SPEC §2: opaque, random (at least 128 bits: 26 base32 letters), prefixed identifiers.
_ID = re.compile(r"(mer|pi|txn|re|tok|evt|we)_[a-z2-7]{26,}")


def _ids(value: Any) -> list[tuple[str, str]]:
    """Every ``…Id`` field's (name, value) in an answer but the request's own (``requestId``)."""
    if isinstance(value, list):
        return [i for item in value for i in _ids(item)]
    if not isinstance(value, dict):
        return []
    return [(k, v) for k, v in value.items() if k.endswith("Id") and k != "requestId" and v is not None] + [
        i for k, item in value.items() if k not in ("metadata", "productDetails") for i in _ids(item)]


async def test_every_field_name_on_the_wire_is_camel_case_and_every_id_random(gw: InProcessGateway, processor: ScriptedProcessor) -> None:
    """SPEC §2: field names are camelCase — in every answer of a whole payment's life: the
    intents (automatic, manual; declined, captured, voided), a refund, the status, the list,
    the history with its attempts and refunds, webhook endpoints and errors; and every
    identifier in them is prefixed and carries at least 128 random bits."""
    shop = await gw.new_merchant()
    answers: list[Any] = []
    processor.charge_outcome = ChargeOutcome.DECLINED
    answers.append(declined := await _processed(gw, shop, metadata={"order_id": "1"}, productDetails={"Any Name": 1}))
    processor.charge_outcome = ChargeOutcome.APPROVED
    pid = declined["paymentIntentId"]
    answers.append((await shop.post(PROCESS, process_body(gw, pid))).json())
    answers.append((await shop.post(REFUND, {"paymentIntentId": pid, "amount": 100, "reason": "r"})).json())
    held = await _processed(gw, shop, captureMethod="manual")
    answers += [held, (await shop.post(CAPTURE, {"paymentIntentId": held["paymentIntentId"], "amount": 10})).json()]
    voided = await _processed(gw, shop, captureMethod="manual")
    answers.append((await shop.post("/api/v1/payment/cancel", {"paymentIntentId": voided["paymentIntentId"]})).json())
    for target in (f"/api/v1/payment/status?paymentIntentId={pid}", "/api/v1/payment/intents?limit=100",
                   f"/api/v1/payment/intent/{pid}", f"/api/v1/payment/intent/{pid}/history",
                   f"/api/v1/payment/intent/{held['paymentIntentId']}/history", "/api/v1/payment/intent/pi_nothing"):
        answers.append((await shop.get(target)).json())
    answers.append((await shop.post("/api/v1/webhooks", {"url": "http://93.184.216.34/hook"})).json())
    answers.append((await shop.get("/api/v1/webhooks")).json())
    answers.append((await shop.post(REFUND, {"paymentIntentId": pid, "amount": 0})).json())
    names = [n for answer in answers for n in _names(answer)]
    kinds = {e["data"].get("kind") for a in answers if isinstance(a.get("data"), list)
             for e in a["data"] if isinstance(e.get("data"), dict)}
    assert {"charge", "authorization", "capture"} <= kinds  # the history's attempts were walked
    assert len(names) > 200 and [n for n in names if not _CAMEL.fullmatch(n[1])] == []
    # SPEC §4: clientSecret is returned by create (none of these) and to the checkout only.
    assert [n for n in names if n[1] == "clientSecret"] == []
    ids = [i for answer in answers for i in _ids(answer)]
    assert {"merchantId", "paymentIntentId", "attemptId", "refundId", "objectId", "webhookEndpointId"} <= \
        {name for name, _ in ids}
    assert [i for i in ids if not (isinstance(i[1], str) and _ID.fullmatch(i[1]))] == []
