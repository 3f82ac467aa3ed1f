"""Manual capture in the SDK (issue #17, SPEC §4): ``capture_method`` on create,
``payment_intents.capture``, the ``requires_capture`` status and the intent's capture
fields, and the waiting calls stopping at ``requires_capture``. Sync and async alike, through
the transport seam (``make_client`` runs each test once per kind)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import paygate

from .conftest import (
    FakeTime,
    assert_signed,
    body_of,
    collect,
    error_reply,
    intent_json,
    reply,
    resolve,
    status_json,
)
from .test_resources import long_poll
from .test_sse import sse, stream_reply


def manual_json(status: str = "requires_capture", **overrides: Any) -> dict[str, Any]:
    """A manual-capture intent as the gateway renders it, authorized for 1999."""
    held = status == "requires_capture"
    data = intent_json(
        status=status,
        captureMethod="manual",
        amountCapturable=1999 if held else 0,
        amountReceived=0,
        cancellationReason=None,
        card={"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2030},
    )
    data.update(overrides)
    return data


# -- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["manual", "automatic"])
async def test_create_sends_capture_method(make_client: Any, method: str) -> None:
    client, gateway = make_client(
        reply(201, intent_json(captureMethod=method, amountCapturable=0, amountReceived=0))
    )
    intent = await resolve(
        client.payment_intents.create(
            amount=1999, currency="USD", product_details={"sku": "mug-01"}, capture_method=method
        )
    )
    request = gateway.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/payment/intent")
    assert body_of(request) == {
        "amount": 1999,
        "currency": "USD",
        "productDetails": {"sku": "mug-01"},
        "captureMethod": method,
    }
    assert_signed(request)
    assert intent.capture_method == method
    assert (intent.amount_capturable, intent.amount_received) == (0, 0)
    assert intent.cancellation_reason is None


async def test_create_omits_capture_method_when_not_given(make_client: Any) -> None:
    # The gateway's default applies, and a gateway older than manual capture is not sent a
    # field it would refuse.
    client, gateway = make_client(reply(201, intent_json()))
    await resolve(
        client.payment_intents.create(amount=1999, currency="USD", product_details={})
    )
    assert "captureMethod" not in body_of(gateway.requests[0])


async def test_create_refuses_a_capture_method_that_is_not_a_string(make_client: Any) -> None:
    client, gateway = make_client(reply(201, intent_json()))
    with pytest.raises(TypeError, match="capture_method must be a str"):
        await resolve(
            client.payment_intents.create(
                amount=1999, currency="USD", product_details={}, capture_method=True
            )
        )
    assert gateway.requests == []


async def test_the_gateway_judges_the_capture_method_value(make_client: Any) -> None:
    # A value the SDK does not know is sent as is (a method added later needs no new SDK);
    # the gateway's 400 comes back as InvalidRequestError, not retried.
    client, gateway = make_client(
        error_reply(400, "parameter_invalid", param="captureMethod", message="bad method")
    )
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(
            client.payment_intents.create(
                amount=1999, currency="USD", product_details={}, capture_method="later"
            )
        )
    assert (info.value.code, info.value.param) == ("parameter_invalid", "captureMethod")
    assert body_of(gateway.requests[0])["captureMethod"] == "later"
    assert len(gateway.requests) == 1


# -- capture ---------------------------------------------------------------------------------


async def test_capture_all_of_the_hold(make_client: Any) -> None:
    captured = manual_json("succeeded", amountReceived=1999)
    client, gateway = make_client(reply(200, captured))
    intent = await resolve(client.payment_intents.capture("pi_123", idempotency_key="cap-1"))
    request = gateway.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/payment/capture")
    # No amount: the gateway captures all of amountCapturable.
    assert body_of(request) == {"paymentIntentId": "pi_123"}
    assert request.headers["idempotency-key"] == "cap-1"
    assert_signed(request)
    assert isinstance(intent, paygate.PaymentIntent)
    assert intent.status == paygate.IntentStatus.SUCCEEDED and intent.is_final
    assert (intent.amount_capturable, intent.amount_received) == (0, 1999)


async def test_partial_capture(make_client: Any) -> None:
    captured = manual_json("succeeded", amountReceived=1500)
    client, gateway = make_client(reply(200, captured))
    intent = await resolve(client.payment_intents.capture("pi_123", amount=1500))
    assert body_of(gateway.requests[0]) == {"paymentIntentId": "pi_123", "amount": 1500}
    # Every POST carries a key, ours or one the SDK made.
    assert gateway.requests[0].headers["idempotency-key"]
    assert intent.amount_received == 1500 and intent.amount == 1999


async def test_capture_answered_in_progress(make_client: Any) -> None:
    client, _ = make_client(reply(200, manual_json("in_progress", amountCapturable=0)))
    intent = await resolve(client.payment_intents.capture("pi_123"))
    assert intent.status == "in_progress" and not intent.is_final


@pytest.mark.parametrize("amount", [15.0, "1500", True])
async def test_capture_amount_must_be_an_int(make_client: Any, amount: Any) -> None:
    client, gateway = make_client(reply(200, manual_json("succeeded")))
    with pytest.raises(TypeError):
        await resolve(client.payment_intents.capture("pi_123", amount=amount))
    assert gateway.requests == []


async def test_capture_needs_an_intent_id(make_client: Any) -> None:
    client, gateway = make_client(reply(200, manual_json("succeeded")))
    with pytest.raises(ValueError):
        await resolve(client.payment_intents.capture(""))
    assert gateway.requests == []


async def test_capture_outside_requires_capture_is_a_conflict_never_retried(
    make_client: Any,
) -> None:
    client, gateway = make_client(error_reply(409, "intent_state_conflict"))
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(client.payment_intents.capture("pi_123"))
    assert (info.value.http_status, info.value.code) == (409, "intent_state_conflict")
    assert len(gateway.requests) == 1


async def test_a_retried_capture_resends_the_same_key_and_bytes(
    make_client: Any, fake_time: FakeTime
) -> None:
    # The connection dropped after sending: the retry must be the same logical request, so
    # the gateway replays the first answer instead of capturing twice.
    client, gateway = make_client(
        httpx.ReadError("reset after send"), reply(200, manual_json("succeeded"))
    )
    intent = await resolve(client.payment_intents.capture("pi_123", amount=1500))
    assert intent.status == "succeeded"
    first, second = gateway.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.content == second.content
    assert first.headers["x-request-nonce"] != second.headers["x-request-nonce"]
    assert_signed(second)
    assert fake_time.sleeps == [0.5]


async def test_a_refused_capture_returns_to_requires_capture_with_last_error(
    make_client: Any,
) -> None:
    refused = manual_json(
        lastError={"code": "processing_error", "declineCode": None, "message": "try again"}
    )
    client, _ = make_client(reply(200, refused))
    intent = await resolve(client.payment_intents.capture("pi_123"))
    assert intent.status == paygate.IntentStatus.REQUIRES_CAPTURE
    assert intent.last_error is not None and intent.last_error.code == "processing_error"
    assert intent.amount_capturable == 1999
    assert intent.raise_if_failed() is intent  # not a decline: nothing to raise


async def test_a_capture_after_the_hold_expired_ends_canceled(make_client: Any) -> None:
    expired = manual_json("canceled", amountCapturable=0, cancellationReason="expired")
    client, _ = make_client(reply(200, expired))
    intent = await resolve(client.payment_intents.capture("pi_123"))
    assert intent.status == "canceled" and intent.is_final
    assert intent.cancellation_reason == "expired"


async def test_cancel_voids_a_hold(make_client: Any) -> None:
    voided = manual_json("canceled", amountCapturable=0, cancellationReason="requested")
    client, gateway = make_client(reply(200, voided))
    intent = await resolve(client.payment_intents.cancel("pi_123"))
    assert body_of(gateway.requests[0]) == {"paymentIntentId": "pi_123"}
    assert gateway.requests[0].url.path == "/api/v1/payment/cancel"
    assert (intent.status, intent.cancellation_reason) == ("canceled", "requested")
    assert (intent.amount_capturable, intent.amount_received) == (0, 0)


# -- waiting ---------------------------------------------------------------------------------


async def test_wait_for_status_stops_at_requires_capture_by_default(
    make_client: Any, fake_time: FakeTime
) -> None:
    client, gateway = make_client(
        long_poll(fake_time, ["created", "in_progress", "requires_capture", "succeeded"])
    )
    status = await resolve(client.payment_intents.wait_for_status("pi_123", timeout=300))
    assert status.status == paygate.IntentStatus.REQUIRES_CAPTURE
    assert not status.is_final
    assert len(gateway.requests) == 3


async def test_wait_for_status_can_wait_past_requires_capture(
    make_client: Any, fake_time: FakeTime
) -> None:
    # After capture() answered in_progress: wait for the capture's own outcome.
    client, _ = make_client(
        long_poll(fake_time, ["requires_capture", "in_progress", "succeeded"])
    )
    status = await resolve(
        client.payment_intents.wait_for_status("pi_123", paygate.FINAL_STATUSES, timeout=300)
    )
    assert status.status == "succeeded"


async def test_stream_ends_at_requires_capture_by_default(make_client: Any) -> None:
    body = sse(
        status_json("in_progress"), status_json("requires_capture"), status_json("succeeded")
    )
    client, gateway = make_client(stream_reply(body))
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["in_progress", "requires_capture"]
    assert len(gateway.requests) == 1


async def test_stream_until_final_passes_requires_capture(make_client: Any) -> None:
    body = sse(
        status_json("requires_capture"), status_json("in_progress"), status_json("succeeded")
    )
    client, _ = make_client(stream_reply(body))
    statuses = await collect(
        client.payment_intents.stream_status("pi_123", until=paygate.FINAL_STATUSES)
    )
    assert [s.status for s in statuses] == ["requires_capture", "in_progress", "succeeded"]


# -- the models ------------------------------------------------------------------------------


def test_the_capture_fields_parse() -> None:
    intent = paygate.PaymentIntent.from_dict(manual_json())
    assert intent.status == paygate.IntentStatus.REQUIRES_CAPTURE == "requires_capture"
    assert intent.capture_method == "manual"
    assert (intent.amount_capturable, intent.amount_received) == (1999, 0)
    assert intent.cancellation_reason is None
    assert not intent.is_final
    assert "amount_capturable=1999" in repr(intent)


def test_an_older_gateway_without_the_capture_fields() -> None:
    # A gateway before manual capture sends none of them: parsing still works, and the SDK
    # does not invent values (amount_received of its succeeded intent is unknown, not 0).
    intent = paygate.PaymentIntent.from_dict(intent_json(status="succeeded"))
    assert intent.status == "succeeded"
    assert intent.capture_method is None and intent.cancellation_reason is None
    assert intent.amount_capturable is None and intent.amount_received is None


def test_mistyped_capture_fields_become_none() -> None:
    # The amounts among them are refused instead (test_models: money is never guessed).
    intent = paygate.PaymentIntent.from_dict(
        intent_json(captureMethod=1, cancellationReason={"why": "x"})
    )
    assert intent.capture_method is None and intent.cancellation_reason is None


def test_positional_construction_keeps_its_meaning() -> None:
    # The new fields come after the older ones: code that built an intent positionally
    # (test doubles in merchants' suites) still means the same thing.
    intent = paygate.PaymentIntent("pi_1", "succeeded", 1999, "USD", 0, "mer_1")
    assert intent.merchant_id == "mer_1" and intent.capture_method is None


def test_history_attempt_kinds_of_a_manual_capture() -> None:
    def attempt(n: int, kind: str, amount: int) -> dict[str, Any]:
        data = {"attemptId": f"txn_{n}", "paymentIntentId": "pi_123", "kind": kind,
                "status": "succeeded", "amount": amount, "currency": "USD"}
        return {"sequence": n, "type": "attempt.updated", "objectId": f"txn_{n}", "data": data}

    events = [paygate.HistoryEvent.from_dict(e)
              for e in (attempt(1, "authorization", 1999), attempt(2, "capture", 1500))]
    kinds = [(e.object.kind, e.object.amount) for e in events
             if isinstance(e.object, paygate.Attempt)]
    assert kinds == [("authorization", 1999), ("capture", 1500)]


def test_status_sets() -> None:
    assert "requires_capture" in paygate.DEFAULT_WAIT_STATUSES
    assert paygate.STREAM_END_STATUSES == {"succeeded", "canceled", "requires_capture"}
    # Not final: the intent still moves (captured, voided or expired).
    assert "requires_capture" not in paygate.FINAL_STATUSES
