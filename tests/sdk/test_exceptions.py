"""Every SPEC §2 error code maps to the right exception class, with its fields."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import paygate
from paygate._base_client import error_class

from .conftest import error_reply, reply, resolve

# (status, type, code) -> the exception the SDK raises (after any retries).
SPEC_ERRORS = [
    (400, "invalid_request_error", "invalid_json", paygate.InvalidRequestError),
    (400, "invalid_request_error", "parameter_missing", paygate.InvalidRequestError),
    (400, "invalid_request_error", "parameter_invalid", paygate.InvalidRequestError),
    (400, "invalid_request_error", "plaintext_card_data", paygate.InvalidRequestError),
    (400, "invalid_request_error", "token_invalid", paygate.InvalidRequestError),
    (401, "authentication_error", "missing_credentials", paygate.AuthenticationError),
    (401, "authentication_error", "invalid_api_key", paygate.AuthenticationError),
    (401, "authentication_error", "invalid_signature", paygate.AuthenticationError),
    (401, "authentication_error", "stale_timestamp", paygate.AuthenticationError),
    (401, "authentication_error", "nonce_reused", paygate.AuthenticationError),
    (404, "invalid_request_error", "resource_missing", paygate.InvalidRequestError),
    (405, "invalid_request_error", "method_not_allowed", paygate.InvalidRequestError),
    (409, "invalid_request_error", "intent_state_conflict", paygate.InvalidRequestError),
    (409, "invalid_request_error", "idempotency_request_in_progress", paygate.IdempotencyError),
    (413, "invalid_request_error", "body_too_large", paygate.InvalidRequestError),
    (415, "invalid_request_error", "unsupported_media_type", paygate.InvalidRequestError),
    (422, "idempotency_error", "idempotency_key_reused", paygate.IdempotencyError),
    (429, "rate_limit_error", "rate_limited", paygate.RateLimitError),
    (500, "api_error", "internal_error", paygate.APIError),
    (503, "api_error", "service_unavailable", paygate.APIError),
]


@pytest.mark.parametrize(
    "status, type_, code, cls", SPEC_ERRORS, ids=[f"{s}-{c}" for s, _, c, _ in SPEC_ERRORS]
)
async def test_error_codes_map_to_classes_with_fields(
    make_client: Any, status: int, type_: str, code: str, cls: type[Exception]
) -> None:
    client, _ = make_client(
        error_reply(
            status,
            code,
            type_=type_,
            message="something went wrong",
            param="amount",
            headers={"Retry-After": "1"},
        ),
        max_retries=0,
    )
    with pytest.raises(paygate.PaygateError) as info:
        await resolve(client.payment_intents.create(amount=1, currency="USD", product_details={}))
    error = info.value
    assert type(error) is cls
    assert error.http_status == status
    assert error.code == code
    assert error.error_type == type_
    assert error.param == "amount"
    assert error.message == "something went wrong"
    assert error.request_id == "req_body"  # the body's requestId wins over the header
    assert error.headers["x-request-id"] == "req_header"
    assert error.headers["retry-after"] == "1"
    assert error.http_body is not None and code in error.http_body
    assert str(error) == f"{status} {code}: something went wrong (request id: req_body)"
    assert code in repr(error) and "req_body" in repr(error)


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, paygate.InvalidRequestError),
        (401, paygate.AuthenticationError),
        (403, paygate.AuthenticationError),
        (404, paygate.InvalidRequestError),
        (409, paygate.InvalidRequestError),
        (413, paygate.InvalidRequestError),
        (422, paygate.IdempotencyError),
        (429, paygate.RateLimitError),
        (500, paygate.APIError),
        (502, paygate.APIError),
        (301, paygate.APIError),
    ],
)
@pytest.mark.parametrize(
    "content",
    [
        b"<html><body>Bad Gateway</body></html>",
        b"",
        b"{trunc",
        b'"a json string"',
        b'{"error": "flat"}',
        b"\xff\xfe",
    ],
)
async def test_non_json_or_odd_error_bodies_still_map_by_status(
    make_client: Any, status: int, cls: type[Exception], content: bytes
) -> None:
    client, _ = make_client(reply(status, content=content), max_retries=0)
    with pytest.raises(paygate.PaygateError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    error = info.value
    assert type(error) is cls
    assert error.http_status == status
    assert error.code is None
    assert error.request_id == "req_header"  # from X-Request-Id when the body has none
    assert error.message.startswith(f"HTTP {status}")


async def test_success_body_that_is_not_json_is_an_api_error(make_client: Any) -> None:
    client, _ = make_client(reply(200, content=b"<html>captive portal</html>"))
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 200
    assert info.value.request_id == "req_header"


async def test_success_body_of_the_wrong_shape_is_an_api_error(make_client: Any) -> None:
    client, _ = make_client(reply(200, [1, 2, 3]))
    with pytest.raises(paygate.APIError):
        await resolve(client.payment_intents.get("pi_123"))


@pytest.mark.parametrize(
    ("status", "cls"), [(200, paygate.APIError), (409, paygate.InvalidRequestError),
                        (500, paygate.APIError)]
)
async def test_json_nested_too_deeply_is_not_a_recursion_error(
    make_client: Any, status: int, cls: type[Exception]
) -> None:
    # json.loads raises RecursionError (not ValueError) past the recursion limit: a few
    # kilobytes of "[" from a broken peer must still give the documented exception.
    for content in (b"[" * 100_000, b'{"error":' * 50_000):
        client, _ = make_client(reply(status, content=content), max_retries=0)
        with pytest.raises(paygate.PaygateError) as info:
            await resolve(client.payment_intents.get("pi_123"))
        assert type(info.value) is cls
        assert info.value.http_status == status
        assert info.value.request_id == "req_header"


def _gzip_that_is_not(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """An answer of ``status`` saying "Content-Encoding: gzip" over bytes that are not gzip."""
    from .test_sse import DualStream

    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers={"Content-Encoding": "gzip", "X-Request-Id": "req_gzip"},
            stream=DualStream(lambda: iter([b"not gzip at all"])),
        )

    return broken


@pytest.mark.parametrize("status", [200, 500])
async def test_body_that_does_not_match_its_content_encoding_is_an_api_error(
    make_client: Any, status: int
) -> None:
    # "Content-Encoding: gzip" over bytes that are not gzip: httpx raises DecodingError
    # (not a TransportError) while reading the body.
    broken = _gzip_that_is_not(status)
    client, gateway = make_client(broken, max_retries=0)
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == status
    assert info.value.request_id == "req_gzip"
    assert "decoded" in info.value.message
    assert len(gateway.requests) == 1


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (429, 3), (400, 1), (200, 1)])
async def test_an_undecodable_body_is_retried_only_when_its_status_is(
    make_client: Any, status: int, attempts: int
) -> None:
    # A proxy's 503 with a broken gzip body is still a 503: retried with the same key
    # like any other, then raised as undecodable; a 400 or a 200 is raised at once.
    broken = _gzip_that_is_not(status)
    client, gateway = make_client(broken, max_retries=2)
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.create(amount=1, currency="USD", product_details={}))
    assert info.value.http_status == status
    assert "decoded" in info.value.message
    assert len(gateway.requests) == attempts
    assert len({r.headers["idempotency-key"] for r in gateway.requests}) == 1


@pytest.mark.parametrize("content", [b"", b"null", b"[1, 2, 3]", b'"text"', b"true"])
async def test_wrong_shape_errors_carry_the_answer_status_and_request_id(
    make_client: Any, content: bytes
) -> None:
    # An empty 200, null or a list where an object (or a "data" list) was promised: the
    # APIError says which answer it was, for every call that parses one.
    calls = [
        lambda c: c.payment_intents.create(amount=1, currency="USD", product_details={}),
        lambda c: c.payment_intents.get("pi_123"),
        lambda c: c.payment_intents.list(),
        lambda c: c.payment_intents.status("pi_123"),
        lambda c: c.payment_intents.history("pi_123"),
        lambda c: c.refunds.create("pi_123"),
        lambda c: c.webhook_endpoints.list(),
        lambda c: c.card_keys(),
    ]
    client, _ = make_client(reply(200, content=content))
    for call in calls:
        with pytest.raises(paygate.APIError) as info:
            await resolve(call(client))
        assert info.value.http_status == 200
        assert info.value.request_id == "req_header"
        assert info.value.http_body == content.decode()


def test_error_class_without_status_uses_the_type() -> None:
    assert error_class(None, "x", "authentication_error") is paygate.AuthenticationError
    assert error_class(None, "x", "rate_limit_error") is paygate.RateLimitError
    assert error_class(None, None, None) is paygate.APIError


def test_hierarchy() -> None:
    for cls in (
        paygate.AuthenticationError,
        paygate.InvalidRequestError,
        paygate.IdempotencyError,
        paygate.RateLimitError,
        paygate.APIError,
        paygate.APIConnectionError,
        paygate.CardError,
        paygate.WaitTimeoutError,
        paygate.SignatureVerificationError,
    ):
        assert issubclass(cls, paygate.PaygateError)
    assert issubclass(paygate.APITimeoutError, paygate.APIConnectionError)
    assert issubclass(paygate.APITimeoutError, TimeoutError)
    assert issubclass(paygate.WaitTimeoutError, TimeoutError)
    # The tree is drawn where users look for it.
    doc = paygate.PaygateError.__module__
    assert doc == "paygate"
    from paygate import _exceptions

    assert _exceptions.__doc__ is not None
    for name in _exceptions.__all__:
        assert name in _exceptions.__doc__


@pytest.mark.parametrize(
    "error",
    [
        paygate.InvalidRequestError(
            "bad",
            http_status=400,
            code="parameter_invalid",
            param="amount",
            request_id="req_1",
            error_type="invalid_request_error",
            headers={"a": "b"},
        ),
        paygate.APITimeoutError("slow"),
        paygate.CardError(
            "declined", code="card_declined", decline_code="expired_card", payment_intent_id="pi_1"
        ),
        paygate.WaitTimeoutError("late"),
    ],
)
def test_errors_pickle_with_their_fields(error: paygate.PaygateError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert copy.__dict__ == error.__dict__
    assert str(copy) == str(error) and copy.args == error.args


def test_errors_without_http_have_empty_fields() -> None:
    error = paygate.SignatureVerificationError("bad")
    assert (error.http_status, error.code, error.param, error.request_id) == (None,) * 4
    assert dict(error.headers) == {}
    assert str(error) == "bad"
