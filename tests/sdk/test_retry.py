"""The retry policy: what is retried, how long the client waits, and that every retry of
one logical call carries the same Idempotency-Key and body but a fresh signature."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import paygate
from paygate._retry import parse_retry_after

from .conftest import (
    FakeTime,
    assert_signed,
    body_of,
    error_reply,
    intent_json,
    reply,
    resolve,
    status_json,
)

CREATED = reply(201, intent_json())


async def create(client: Any, **kwargs: Any) -> paygate.PaymentIntent:
    result: paygate.PaymentIntent = await resolve(
        client.payment_intents.create(
            amount=1999, currency="USD", product_details={"sku": "mug-01"}, **kwargs
        )
    )
    return result


# -- backoff ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_number, cap", [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]
)
def test_backoff_bounds_with_seeded_random(retry_number: int, cap: float) -> None:
    rng = random.Random(1234)
    backoff = paygate.Backoff(random=rng.random)
    delays = [backoff.delay(retry_number) for _ in range(500)]
    assert all(cap / 2 <= d <= cap for d in delays)
    # Jitter really spreads (not a constant hiding in the bounds).
    assert max(delays) - min(delays) > cap / 4


def test_backoff_extremes_of_the_random_source() -> None:
    assert paygate.Backoff(random=lambda: 0.0).delay(2) == 2.0
    assert paygate.Backoff(random=lambda: 0.999999).delay(2) == pytest.approx(1.0, abs=1e-5)


def test_backoff_of_a_late_retry_is_the_cap() -> None:
    # max_retries above 1024 against a gateway down for good: retry 1024 raised
    # OverflowError (int too large to convert to float) instead of waiting the cap.
    backoff = paygate.Backoff(random=lambda: 0.0)
    assert [backoff.delay(n) for n in (63, 64, 1024, 10**6)] == [5.0] * 4


def test_seeded_backoff_is_reproducible() -> None:
    a = paygate.Backoff(random=random.Random(7).random)
    b = paygate.Backoff(random=random.Random(7).random)
    assert [a.delay(n) for n in range(6)] == [b.delay(n) for n in range(6)]


def test_retry_after_is_a_floor_capped_at_60_seconds() -> None:
    backoff = paygate.Backoff(random=lambda: 0.0)
    assert backoff.delay(0, retry_after=7) == 7
    assert backoff.delay(0, retry_after=3600) == 60
    assert backoff.delay(3, retry_after=1) == 4.0  # the backoff is longer: it wins
    assert backoff.delay(0, retry_after=-5) == 0.5


def test_parse_retry_after() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "12"})) == 12.0
    assert parse_retry_after(httpx.Headers({"Retry-After": " 1.5 "})) == 1.5
    assert parse_retry_after(httpx.Headers({})) is None
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": date}), now=now) == 30.0
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": past}), now=now) == 0.0


# -- what is retried --------------------------------------------------------------------


RETRIED = [
    pytest.param(error_reply(409, "idempotency_request_in_progress"), id="409-in-progress"),
    pytest.param(error_reply(429, "rate_limited", type_="rate_limit_error"), id="429"),
    pytest.param(error_reply(500, "internal_error", type_="api_error"), id="500"),
    pytest.param(error_reply(502, "bad_gateway", type_="api_error"), id="502"),
    pytest.param(reply(503, content=b"<html>upstream down</html>"), id="503-html"),
    pytest.param(reply(504), id="504-empty"),
    pytest.param(httpx.ConnectError("refused"), id="connect-error"),
    pytest.param(httpx.ReadTimeout("slow"), id="read-timeout"),
    pytest.param(httpx.RemoteProtocolError("dropped"), id="dropped"),
]


@pytest.mark.parametrize("failure", RETRIED)
async def test_retried_then_succeeds(make_client: Any, fake_time: FakeTime, failure: Any) -> None:
    client, gateway = make_client(failure, failure, CREATED)
    intent = await create(client)
    assert intent.id == "pi_123"
    assert len(gateway.requests) == 3
    assert fake_time.sleeps == [0.5, 1.0]


NOT_RETRIED = [
    (error_reply(400, "parameter_invalid", param="amount"), paygate.InvalidRequestError),
    (
        error_reply(401, "invalid_signature", type_="authentication_error"),
        paygate.AuthenticationError,
    ),
    (error_reply(401, "nonce_reused", type_="authentication_error"), paygate.AuthenticationError),
    (error_reply(404, "resource_missing"), paygate.InvalidRequestError),
    (error_reply(409, "intent_state_conflict"), paygate.InvalidRequestError),
    (error_reply(413, "body_too_large"), paygate.InvalidRequestError),
    (
        error_reply(422, "idempotency_key_reused", type_="idempotency_error"),
        paygate.IdempotencyError,
    ),
    (reply(409, content=b"conflict"), paygate.InvalidRequestError),
]


@pytest.mark.parametrize("failure, error", NOT_RETRIED)
async def test_not_retried(
    make_client: Any, fake_time: FakeTime, failure: Any, error: type[Exception]
) -> None:
    client, gateway = make_client(failure, CREATED)
    with pytest.raises(error):
        await create(client)
    assert len(gateway.requests) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    "failure, error",
    [
        (error_reply(409, "idempotency_request_in_progress"), paygate.IdempotencyError),
        (error_reply(429, "rate_limited", type_="rate_limit_error"), paygate.RateLimitError),
        (error_reply(503, "service_unavailable", type_="api_error"), paygate.APIError),
        (httpx.ConnectError("refused"), paygate.APIConnectionError),
        (httpx.ConnectTimeout("slow"), paygate.APITimeoutError),
        (httpx.ReadTimeout("slow"), paygate.APITimeoutError),
    ],
)
@pytest.mark.parametrize("max_retries", [0, 1, 4])
async def test_max_retries_then_the_mapped_error(
    make_client: Any, fake_time: FakeTime, failure: Any, error: type[Exception], max_retries: int
) -> None:
    client, gateway = make_client(failure, max_retries=max_retries)
    with pytest.raises(error) as info:
        await create(client)
    assert len(gateway.requests) == max_retries + 1
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0][:max_retries]
    if isinstance(failure, Exception):
        assert info.value.__cause__ is failure
        assert info.value.http_status is None  # type: ignore[attr-defined]


async def test_retry_after_is_honoured(make_client: Any, fake_time: FakeTime) -> None:
    limited = error_reply(
        429, "rate_limited", type_="rate_limit_error", headers={"Retry-After": "7"}
    )
    too_long = error_reply(
        503, "service_unavailable", type_="api_error", headers={"Retry-After": "86400"}
    )
    client, _ = make_client(limited, too_long, CREATED)
    await create(client)
    assert fake_time.sleeps == [7.0, 60.0]


async def test_default_max_retries_is_3(make_client: Any, fake_time: FakeTime) -> None:
    client, gateway = make_client(error_reply(500, "internal_error", type_="api_error"))
    with pytest.raises(paygate.APIError):
        await create(client)
    assert len(gateway.requests) == 4
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


# -- idempotency and signatures across retries -------------------------------------------


async def test_same_key_and_bytes_fresh_nonce_and_signature(make_client: Any) -> None:
    client, gateway = make_client(
        httpx.ConnectError("refused"),
        error_reply(500, "internal_error", type_="api_error"),
        error_reply(409, "idempotency_request_in_progress"),
        CREATED,
    )
    await create(client, description="x" * 10)
    requests = gateway.requests
    assert len(requests) == 4
    keys = {r.headers["idempotency-key"] for r in requests}
    assert len(keys) == 1
    uuid.UUID(keys.pop(), version=4)  # generated: a UUID4
    assert len({r.content for r in requests}) == 1
    assert len({r.headers["x-request-nonce"] for r in requests}) == 4
    assert len({r.headers["x-signature"] for r in requests}) == 4
    for request in requests:
        assert_signed(request)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["content-length"] == str(len(request.content))
    assert body_of(requests[0]) == {
        "amount": 1999,
        "currency": "USD",
        "productDetails": {"sku": "mug-01"},
        "description": "xxxxxxxxxx",
    }


async def test_caller_key_is_used_on_every_attempt(make_client: Any) -> None:
    client, gateway = make_client(reply(502), CREATED)
    await create(client, idempotency_key="order-1042-create")
    assert [r.headers["idempotency-key"] for r in gateway.requests] == ["order-1042-create"] * 2


async def test_each_logical_post_gets_its_own_key(make_client: Any) -> None:
    client, gateway = make_client(CREATED)
    await create(client)
    await create(client)
    first, second = (r.headers["idempotency-key"] for r in gateway.requests)
    assert first != second


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\there", "caf\u00e9"])
async def test_invalid_idempotency_keys_are_refused_before_sending(
    make_client: Any, bad: str
) -> None:
    client, gateway = make_client(CREATED)
    with pytest.raises(ValueError):
        await create(client, idempotency_key=bad)
    assert gateway.requests == []


async def test_gets_are_retried_without_a_key(make_client: Any, fake_time: FakeTime) -> None:
    client, gateway = make_client(httpx.ReadTimeout("slow"), reply(500), reply(200, status_json()))
    status = await resolve(client.payment_intents.status("pi_123"))
    assert status.status == "in_progress"
    assert len(gateway.requests) == 3
    for request in gateway.requests:
        assert "idempotency-key" not in request.headers
        assert "content-type" not in request.headers
        assert request.content == b""
        assert_signed(request)
    assert len({r.headers["x-request-nonce"] for r in gateway.requests}) == 3


async def test_base_url_prefix_and_query_are_signed_as_sent(make_client: Any) -> None:
    client, gateway = make_client(
        reply(200, {"data": [], "hasMore": False}), base_url="https://example.test/pay/gateway/"
    )
    await resolve(
        client.payment_intents.list(limit=2, status="in_progress", starting_after="pi_a b")
    )
    request = gateway.requests[0]
    path, _, query = request.url.raw_path.decode().partition("?")
    assert path == "/pay/gateway/api/v1/payment/intents"
    # httpx spells the space "%20" before 0.28 and "+" from 0.28 (both within the SDK's
    # range): the gateway reads either as a space and checks the signature over the bytes
    # as sent, which is what assert_signed checks here.
    assert query.replace("%20", "+") == "limit=2&startingAfter=pi_a+b&status=in_progress"
    assert_signed(request)


async def test_no_query_no_question_mark(make_client: Any) -> None:
    # The gateway cannot tell "/path?" from "/path" (docs/api.md, "Signing every request"):
    # a request without query parameters goes, and is signed, without the "?".
    client, gateway = make_client(
        reply(200, {"data": [], "hasMore": False}), reply(200, intent_json())
    )
    await resolve(client.payment_intents.list())
    await resolve(client.payment_intents.get("pi_123"))
    assert [r.url.raw_path for r in gateway.requests] == [
        b"/api/v1/payment/intents",
        b"/api/v1/payment/intent/pi_123",
    ]
    for request in gateway.requests:
        assert_signed(request)


async def test_redirects_are_not_followed(make_client: Any) -> None:
    client, gateway = make_client(reply(307, headers={"Location": "https://evil.test/"}))
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 307
    assert len(gateway.requests) == 1
