"""The resources: what each call sends (method, path, camelCase body) and what it returns;
auto-pagination; wait_for_status's long-poll loop and deadline."""

from __future__ import annotations

from datetime import UTC, datetime
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


async def test_create(make_client: Any) -> None:
    client, gateway = make_client(
        reply(201, intent_json(clientSecret="pi_123_secret_abc", brandNewField={"x": 1}))
    )
    intent = await resolve(
        client.payment_intents.create(
            amount=1999,
            currency="USD",
            product_details={"sku": "mug-01", "name": "Mug"},
            description="A mug",
            metadata={"orderId": "1042"},
            merchant_id="mer_1",
        )
    )
    request = gateway.requests[0]
    assert (request.method, request.url.path) == ("POST", "/api/v1/payment/intent")
    assert body_of(request) == {
        "amount": 1999,
        "currency": "USD",
        "productDetails": {"sku": "mug-01", "name": "Mug"},
        "description": "A mug",
        "metadata": {"orderId": "1042"},
        "merchantId": "mer_1",
    }
    assert request.content.startswith(b'{"amount":1999,"currency":"USD",')  # compact JSON
    assert_signed(request)
    assert isinstance(intent, paygate.PaymentIntent)
    assert intent.id == intent.payment_intent_id == "pi_123"
    assert intent.status == paygate.IntentStatus.CREATED
    assert intent.amount == 1999 and intent.currency == "USD" and intent.amount_refunded == 0
    assert intent.product_details == {"sku": "mug-01", "name": "Mug"}
    assert intent.metadata == {"orderId": "1042"}
    assert intent.client_secret == "pi_123_secret_abc"
    assert intent.created_at == datetime(2023, 10, 15, 14, 22, 31, tzinfo=UTC)
    assert intent.raw["brandNewField"] == {"x": 1}  # unknown fields stay reachable
    assert not intent.is_final


@pytest.mark.parametrize("amount", [19.99, "1999", True, None])
async def test_amount_must_be_an_int(make_client: Any, amount: Any) -> None:
    client, gateway = make_client(reply(201, intent_json()))
    with pytest.raises(TypeError):
        await resolve(
            client.payment_intents.create(amount=amount, currency="USD", product_details={})
        )
    assert gateway.requests == []


async def test_get_quotes_the_id(make_client: Any) -> None:
    client, gateway = make_client(reply(200, intent_json()))
    await resolve(client.payment_intents.get("pi_1/../x?y"))
    assert gateway.requests[0].url.raw_path == b"/api/v1/payment/intent/pi_1%2F..%2Fx%3Fy"
    assert_signed(gateway.requests[0])


async def test_cancel_and_process(make_client: Any) -> None:
    failed = intent_json(
        status="failed",
        lastError={
            "code": "card_declined",
            "declineCode": "insufficient_funds",
            "message": "Declined",
        },
    )
    client, gateway = make_client(
        reply(200, intent_json(status="canceled")),
        reply(200, failed),
        reply(200, intent_json(status="in_progress")),
    )
    canceled = await resolve(client.payment_intents.cancel("pi_123", idempotency_key="c-1"))
    assert canceled.status == "canceled" and canceled.is_final
    declined = await resolve(client.payment_intents.process("pi_123", token="tok_abc"))
    # A decline is returned, not raised...
    assert declined.status == "failed"
    assert declined.last_error == paygate.LastError(
        "card_declined", "insufficient_funds", "Declined"
    )
    # ...unless asked for.
    with pytest.raises(paygate.CardError) as info:
        declined.raise_if_failed()
    assert info.value.code == "card_declined"
    assert info.value.decline_code == "insufficient_funds"
    assert info.value.payment_intent_id == "pi_123"
    assert info.value.payment is declined
    in_progress = await resolve(
        client.payment_intents.process("pi_123", encrypted_card="a.b.c.d.e")
    )
    assert in_progress.raise_if_failed() is in_progress

    cancel, token, jwe = gateway.requests
    assert (cancel.url.path, body_of(cancel)) == (
        "/api/v1/payment/cancel",
        {"paymentIntentId": "pi_123"},
    )
    assert cancel.headers["idempotency-key"] == "c-1"
    assert token.url.path == "/api/v1/payment/process"
    assert body_of(token) == {
        "paymentIntentId": "pi_123",
        "paymentMethod": "card",
        "paymentDetails": {"token": "tok_abc"},
    }
    assert body_of(jwe)["paymentDetails"] == {"encryptedCard": "a.b.c.d.e"}
    for request in gateway.requests:
        assert_signed(request)


@pytest.mark.parametrize("kwargs", [{}, {"token": "tok_a", "encrypted_card": "x"}])
async def test_process_needs_exactly_one_payment_detail(
    make_client: Any, kwargs: dict[str, str]
) -> None:
    client, gateway = make_client(reply(200, intent_json()))
    with pytest.raises(ValueError):
        await resolve(client.payment_intents.process("pi_123", **kwargs))
    assert gateway.requests == []


async def test_status_and_long_poll_timeout(make_client: Any) -> None:
    client, gateway = make_client(reply(200, status_json("succeeded")))
    status = await resolve(client.payment_intents.status("pi_123", wait=30))
    assert isinstance(status, paygate.PaymentStatus) and status.is_final
    request = gateway.requests[0]
    assert request.url.path == "/api/v1/payment/status"
    assert dict(request.url.params) == {"paymentIntentId": "pi_123", "wait": "30"}
    # The HTTP read timeout outlasts the long-poll.
    assert request.extensions["timeout"]["read"] >= 45
    await resolve(client.payment_intents.status("pi_123", wait=0.2))
    assert gateway.requests[1].url.params["wait"] == "1"
    await resolve(client.payment_intents.status("pi_123"))
    assert "wait" not in gateway.requests[2].url.params
    with pytest.raises(ValueError):
        await resolve(client.payment_intents.status("pi_123", wait=61))


async def test_history(make_client: Any) -> None:
    attempt = {
        "attemptId": "txn_1",
        "paymentIntentId": "pi_123",
        "kind": "charge",
        "status": "failed",
        "amount": 1999,
        "currency": "USD",
        "card": {"brand": "visa", "last4": "0002", "expMonth": 12, "expYear": 2030},
        "declineCode": "generic_decline",
        "createdAt": "2023-10-15T14:22:31.000Z",
        "updatedAt": "2023-10-15T14:22:32.000Z",
    }
    refund = {"refundId": "re_1", "paymentIntentId": "pi_123", "amount": 500, "status": "pending"}

    def event(sequence: int, type_: str, object_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"sequence": sequence, "type": type_, "objectId": object_id, "data": data,
                "createdAt": "2023-10-15T14:22:31.000Z"}

    body = {"data": [
        event(1, "payment_intent.created", "pi_123", intent_json()),
        event(2, "attempt.updated", "txn_1", attempt),
        event(3, "refund.created", "re_1", refund),
        event(4, "dispute.created", "dp_1", {"disputeId": "dp_1"}),
    ]}
    client, gateway = make_client(reply(200, body))
    events = await resolve(client.payment_intents.history("pi_123"))
    assert gateway.requests[0].url.path == "/api/v1/payment/intent/pi_123/history"
    assert all(isinstance(e, paygate.HistoryEvent) for e in events)
    assert [(e.sequence, e.type, e.object_id) for e in events] == [
        (1, "payment_intent.created", "pi_123"), (2, "attempt.updated", "txn_1"),
        (3, "refund.created", "re_1"), (4, "dispute.created", "dp_1")]
    assert events[0].created_at is not None and events[0].created_at.tzinfo is not None
    intent, failed, refunded, unknown = (e.object for e in events)
    assert isinstance(intent, paygate.PaymentIntent) and intent.id == "pi_123"
    assert isinstance(failed, paygate.Attempt)
    assert (failed.id, failed.kind, failed.status, failed.decline_code) == (
        "txn_1", "charge", "failed", "generic_decline")
    assert failed.card is not None and failed.card.last4 == "0002" and failed.updated_at is not None
    assert isinstance(refunded, paygate.Refund) and refunded.amount == 500
    assert unknown is None and events[3].data == {"disputeId": "dp_1"}  # a newer type: data kept


# -- lists and auto-pagination -------------------------------------------------------------


def page_of(ids: list[str], has_more: bool) -> Any:
    return reply(200, {"data": [intent_json(paymentIntentId=i) for i in ids], "hasMore": has_more})


async def test_list_one_page(make_client: Any) -> None:
    client, gateway = make_client(page_of(["pi_3", "pi_2"], True))
    page = await resolve(client.payment_intents.list(limit=2, status=paygate.IntentStatus.CREATED))
    assert isinstance(page, paygate.Page)
    assert [i.id for i in page] == ["pi_3", "pi_2"] and len(page) == 2 and page.has_more
    assert dict(gateway.requests[0].url.params) == {"limit": "2", "status": "created"}


async def test_auto_paging_follows_the_cursor(make_client: Any) -> None:
    client, gateway = make_client(
        page_of(["pi_5", "pi_4"], True), page_of(["pi_3", "pi_2"], True), page_of(["pi_1"], False)
    )
    ids = [
        i.id
        for i in await collect(client.payment_intents.list_auto_paging(limit=2, status="succeeded"))
    ]
    assert ids == ["pi_5", "pi_4", "pi_3", "pi_2", "pi_1"]
    params = [dict(r.url.params) for r in gateway.requests]
    assert params == [
        {"limit": "2", "status": "succeeded"},
        {"limit": "2", "status": "succeeded", "startingAfter": "pi_4"},
        {"limit": "2", "status": "succeeded", "startingAfter": "pi_2"},
    ]
    for request in gateway.requests:
        assert_signed(request)


@pytest.mark.parametrize(
    "pages",
    [
        [page_of(["pi_2", "pi_1"], True)],  # startingAfter ignored: the same page forever
        [page_of(["pi_4", "pi_3"], True), page_of(["pi_2", "pi_1"], True)],  # a cycle
        [reply(200, {"data": [{"status": "created"}], "hasMore": True})],  # no id to go on from
    ],
)
async def test_auto_paging_refuses_a_list_that_does_not_advance(
    make_client: Any, pages: list[Any]
) -> None:
    client, gateway = make_client(*pages)
    with pytest.raises(paygate.APIError, match="does not advance"):
        await collect(client.payment_intents.list_auto_paging(), limit=20)
    assert len(gateway.requests) <= 3


async def test_auto_paging_stops_on_an_empty_page(make_client: Any) -> None:
    client, gateway = make_client(page_of([], True))
    assert await collect(client.payment_intents.list_auto_paging()) == []
    assert len(gateway.requests) == 1


async def test_auto_paging_is_lazy(make_client: Any) -> None:
    client, gateway = make_client(page_of(["pi_5", "pi_4"], True), page_of(["pi_3"], False))
    first = await collect(client.payment_intents.list_auto_paging(), limit=1)
    assert [i.id for i in first] == ["pi_5"]
    assert len(gateway.requests) == 1


# -- wait_for_status ---------------------------------------------------------------------


def long_poll(fake_time: FakeTime, statuses: list[str], hold: bool = True) -> Any:
    """A gateway that holds each poll for its whole ``wait`` (when ``hold``) and answers
    the next status of ``statuses`` (the last repeats)."""
    remaining = list(statuses)

    def make(request: httpx.Request) -> httpx.Response:
        if hold:
            fake_time.now += int(request.url.params["wait"])
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json=status_json(status))

    return make


async def test_wait_for_status_returns_the_first_awaited_status(
    make_client: Any, fake_time: FakeTime
) -> None:
    client, gateway = make_client(long_poll(fake_time, ["created", "in_progress", "failed"]))
    status = await resolve(client.payment_intents.wait_for_status("pi_123", timeout=200))
    assert status.status == "failed"
    # The first look does not wait: the gateway's long-poll does not end on "failed".
    assert [r.url.params["wait"] for r in gateway.requests] == ["0", "60", "60"]
    for request in gateway.requests:
        assert_signed(request)


async def test_wait_for_an_intent_already_failed_answers_at_once(make_client: Any, fake_time: FakeTime) -> None:
    """The gateway holds a long-poll on a failed intent (it may be processed again): a wait
    that ends on "failed" looks first, so an intent already failed is answered at once."""
    client, gateway = make_client(long_poll(fake_time, ["failed"]))
    start = fake_time.now
    status = await resolve(client.payment_intents.wait_for_status("pi_123", timeout=200))
    assert status.status == "failed" and fake_time.now == start
    assert [r.url.params["wait"] for r in gateway.requests] == ["0"]


async def test_waiting_only_for_resting_statuses_long_polls_from_the_start(
    make_client: Any, fake_time: FakeTime
) -> None:
    client, gateway = make_client(long_poll(fake_time, ["in_progress", "succeeded"]))
    status = await resolve(client.payment_intents.wait_for_status("pi_123", paygate.FINAL_STATUSES, timeout=200))
    assert status.status == "succeeded"
    assert [r.url.params["wait"] for r in gateway.requests] == ["60", "60"]


async def test_wait_for_status_custom_statuses(make_client: Any, fake_time: FakeTime) -> None:
    client, _ = make_client(long_poll(fake_time, ["created", "in_progress", "failed"]))
    status = await resolve(
        client.payment_intents.wait_for_status(
            "pi_123", {paygate.IntentStatus.IN_PROGRESS}, timeout=200
        )
    )
    assert status.status == "in_progress"


async def test_wait_for_status_deadline(make_client: Any, fake_time: FakeTime) -> None:
    client, gateway = make_client(long_poll(fake_time, ["in_progress"]))
    start = fake_time.now
    with pytest.raises(paygate.WaitTimeoutError) as info:
        await resolve(client.payment_intents.wait_for_status("pi_123", timeout=65))
    # A first look, then polls that shrink to fit the deadline: 60 s, then the 5 s left.
    assert [r.url.params["wait"] for r in gateway.requests] == ["0", "60", "5"]
    assert fake_time.now - start == 65
    assert isinstance(info.value, TimeoutError)
    assert info.value.last_status is not None
    assert info.value.last_status.status == "in_progress"
    assert "pi_123" in str(info.value)


async def test_wait_for_status_does_not_hammer_a_gateway_that_ignores_wait(
    make_client: Any, fake_time: FakeTime
) -> None:
    client, gateway = make_client(long_poll(fake_time, ["in_progress"], hold=False))
    with pytest.raises(paygate.WaitTimeoutError):
        await resolve(client.payment_intents.wait_for_status("pi_123", timeout=5))
    # At most one poll per 0.5 s once the answers stop changing.
    assert 9 <= len(gateway.requests) <= 12
    assert all(s <= 0.5 for s in fake_time.sleeps)


async def test_wait_for_status_infinite_timeout_is_no_deadline(make_client: Any) -> None:
    # float("inf") raised OverflowError (ceil of the remaining time) after the first poll.
    client, gateway = make_client(
        reply(200, status_json("in_progress")), reply(200, status_json("succeeded"))
    )
    status = await resolve(
        client.payment_intents.wait_for_status("pi_123", timeout=float("inf"))
    )
    assert status.status == "succeeded"
    assert [r.url.params.get("wait") for r in gateway.requests] == ["0", "60"]


@pytest.mark.parametrize("timeout", [float("nan"), -1.0])
async def test_wait_for_status_nan_or_negative_timeout_is_refused(
    make_client: Any, timeout: float
) -> None:
    client, gateway = make_client(reply(200, status_json("in_progress")))
    with pytest.raises(ValueError, match="timeout must be"):
        await resolve(client.payment_intents.wait_for_status("pi_123", timeout=timeout))
    assert gateway.requests == []


async def test_wait_for_status_timeout_zero_checks_once(
    make_client: Any, fake_time: FakeTime
) -> None:
    client, gateway = make_client(long_poll(fake_time, ["succeeded"]))
    status = await resolve(client.payment_intents.wait_for_status("pi_123", timeout=0))
    assert status.status == "succeeded"
    assert [r.url.params["wait"] for r in gateway.requests] == ["0"]


async def test_wait_for_status_failed_can_be_raised(make_client: Any, fake_time: FakeTime) -> None:
    failed = status_json(
        "failed", lastError={"code": "card_declined", "declineCode": "expired_card", "message": "m"}
    )
    client, _ = make_client(reply(200, failed))
    status = await resolve(client.payment_intents.wait_for_status("pi_123"))
    with pytest.raises(paygate.CardError) as info:
        status.raise_if_failed()
    assert info.value.decline_code == "expired_card"


async def test_wait_for_status_propagates_api_errors(make_client: Any) -> None:
    client, _ = make_client(error_reply(404, "resource_missing"))
    with pytest.raises(paygate.InvalidRequestError):
        await resolve(client.payment_intents.wait_for_status("pi_nope"))


# -- refunds and webhook endpoints ---------------------------------------------------------


async def test_refunds(make_client: Any) -> None:
    answer = {"refundId": "re_1", "paymentIntentId": "pi_123", "amount": 500, "status": "succeeded"}
    client, gateway = make_client(reply(200, answer))
    refund = await resolve(client.refunds.create("pi_123", amount=500, reason="damaged"))
    assert refund == paygate.Refund("re_1", "pi_123", 500, "succeeded")
    assert refund.id == "re_1"
    await resolve(client.refunds.create("pi_123"))
    first, second = gateway.requests
    assert first.url.path == "/api/v1/payment/refund"
    assert body_of(first) == {"paymentIntentId": "pi_123", "amount": 500, "reason": "damaged"}
    assert body_of(second) == {"paymentIntentId": "pi_123"}
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]
    with pytest.raises(TypeError):
        await resolve(client.refunds.create("pi_123", amount=5.0))


async def test_a_failed_refund_says_why(make_client: Any) -> None:
    why = "amount_exceeds_remaining: refund amount exceeds what remains of the charge (0)"
    answer = {"refundId": "re_1", "paymentIntentId": "pi_123", "amount": 500, "currency": "USD",
              "status": "failed", "reason": "damaged", "failureReason": why}
    client, _ = make_client(reply(200, answer))
    refund = await resolve(client.refunds.create("pi_123", amount=500, reason="damaged"))
    assert (refund.status, refund.reason, refund.failure_reason) == ("failed", "damaged", why)


async def test_webhook_endpoints(make_client: Any) -> None:
    created = {
        "webhookEndpointId": "we_1",
        "url": "https://shop.test/hooks",
        "events": ["payment_intent.succeeded"],
        "secret": "whsec_c2VjcmV0",
    }
    client, gateway = make_client(
        reply(201, created),
        reply(200, {"data": [{k: v for k, v in created.items() if k != "secret"}]}),
        reply(204),
    )
    endpoint = await resolve(
        client.webhook_endpoints.create(
            "https://shop.test/hooks", events=["payment_intent.succeeded"]
        )
    )
    assert endpoint.id == "we_1" and endpoint.secret == "whsec_c2VjcmV0"
    assert endpoint.events == ("payment_intent.succeeded",)
    assert "whsec_" not in repr(endpoint)
    page = await resolve(client.webhook_endpoints.list())
    assert [e.id for e in page] == ["we_1"] and page.data[0].secret is None
    assert await resolve(client.webhook_endpoints.delete("we_1")) is None
    create, list_, delete = gateway.requests
    assert (create.method, create.url.path) == ("POST", "/api/v1/webhooks")
    assert body_of(create) == {
        "url": "https://shop.test/hooks",
        "events": ["payment_intent.succeeded"],
    }
    assert (list_.method, list_.url.path) == ("GET", "/api/v1/webhooks")
    assert (delete.method, delete.url.path) == ("DELETE", "/api/v1/webhooks/we_1")
    assert "idempotency-key" not in delete.headers
    for request in gateway.requests:
        assert_signed(request)
    with pytest.raises(TypeError):
        await resolve(client.webhook_endpoints.create("https://x.test", events="all"))
