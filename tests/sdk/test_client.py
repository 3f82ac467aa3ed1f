"""Client construction, headers, context managers, and what reprs and logs never show."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import respx

import paygate

from .conftest import API_KEY, BASE_URL, SIGNING_SECRET, intent_json, reply, resolve


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"api_key": ""}, "api_key"),
        ({"signing_secret": ""}, "signing_secret"),
        ({"api_key": "sk_test_oops"}, "signing secret"),
        ({"base_url": "gateway.test"}, "base_url"),
        ({"base_url": "ftp://gateway.test"}, "base_url"),
        ({"base_url": "https://gateway.test/?x=1"}, "base_url"),
        # Empty ones too: once accepted, and every request went to / with the API's path
        # after the "?" (or "#"), so the SDK sent, and signed, a bare "?".
        ({"base_url": "https://gateway.test/?"}, "query or fragment"),
        ({"base_url": "https://gateway.test/pay#"}, "query or fragment"),
        ({"max_retries": -1}, "max_retries"),
        # httpx's own refusals were httpx.InvalidURL, not a ValueError: a URL read from a
        # file with its line end, or an unclosed IPv6 literal.
        ({"base_url": "https://gateway.test/\n"}, "base_url"),
        ({"base_url": "http://[::1"}, "base_url"),
    ],
)
@pytest.mark.parametrize("cls", [paygate.Client, paygate.AsyncClient])
def test_invalid_configuration(cls: Any, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "api_key": API_KEY,
        "signing_secret": SIGNING_SECRET,
        "base_url": BASE_URL,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        cls(args.pop("api_key"), args.pop("signing_secret"), args.pop("base_url"), **args)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", " ", "\t", "é"])
@pytest.mark.parametrize("cls", [paygate.Client, paygate.AsyncClient])
def test_an_api_key_that_cannot_go_in_a_header_is_refused_without_echoing_it(
    cls: Any, suffix: str
) -> None:
    # Was: accepted; the first request then failed with an APIConnectionError (and an
    # httpcore debug log line) quoting "Illegal header value b'Bearer pk_test_…\n'", or
    # a UnicodeEncodeError holding the key.
    key = API_KEY + suffix
    with pytest.raises(ValueError, match="api_key") as info:
        cls(key, SIGNING_SECRET, BASE_URL)
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)


@pytest.mark.parametrize("cls", [paygate.Client, paygate.AsyncClient])
def test_a_base_url_with_a_password_is_refused_without_echoing_it(cls: Any) -> None:
    # Once: accepted, and repr(client) (and httpx's log lines) showed the password.
    with pytest.raises(ValueError) as info:
        cls(API_KEY, SIGNING_SECRET, "https://ops:hunter2-secret@gateway.example")
    assert "hunter2-secret" not in str(info.value) and "user name or password" in str(info.value)


def test_repr_never_shows_credentials() -> None:
    client = paygate.Client(API_KEY, SIGNING_SECRET, BASE_URL)
    try:
        text = repr(client)
        assert SIGNING_SECRET not in text and API_KEY not in text
        assert "pk_test_" in text and BASE_URL in text
    finally:
        client.close()


def test_sync_context_manager_closes_the_http_client() -> None:
    with paygate.Client(API_KEY, SIGNING_SECRET, BASE_URL) as client:
        http = client._http
    assert http.is_closed


async def test_async_context_manager_closes_the_http_client() -> None:
    async with paygate.AsyncClient(API_KEY, SIGNING_SECRET, BASE_URL) as client:
        http = client._http
    assert http.is_closed


def test_a_caller_http_client_is_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(reply(201, intent_json())))
    with paygate.Client(API_KEY, SIGNING_SECRET, BASE_URL, http_client=http) as client:
        assert client.payment_intents.create(amount=1, currency="USD", product_details={}).id
    assert not http.is_closed
    http.close()
    with pytest.raises(ValueError):
        paygate.Client(
            API_KEY,
            SIGNING_SECRET,
            BASE_URL,
            http_client=http,
            transport=httpx.MockTransport(reply()),
        )


async def test_standard_headers(make_client: Any) -> None:
    client, gateway = make_client(reply(201, intent_json()))
    await resolve(client.payment_intents.create(amount=1, currency="USD", product_details={}))
    headers = gateway.requests[0].headers
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith(f"paygate-python/{paygate.__version__}")
    assert headers["x-request-timestamp"].endswith("Z")
    assert SIGNING_SECRET not in str(gateway.requests[0].headers)
    assert SIGNING_SECRET.encode() not in gateway.requests[0].content


async def test_timeout_configuration_reaches_the_transport(make_client: Any) -> None:
    client, gateway = make_client(reply(201, intent_json()), timeout=12.5)
    await resolve(client.payment_intents.create(amount=1, currency="USD", product_details={}))
    assert gateway.requests[0].extensions["timeout"] == {
        "connect": 12.5,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }


async def test_logs_show_no_bodies_or_secrets(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="paygate")
    client, _ = make_client(reply(503), reply(201, intent_json(clientSecret="pi_1_secret_zz")))
    await resolve(
        client.payment_intents.create(
            amount=1, currency="USD", product_details={"sku": "hidden-sku"}
        )
    )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "retry 1/3" in text and "/api/v1/payment/intent" in text
    for secret in ("hidden-sku", "pi_1_secret_zz", SIGNING_SECRET, API_KEY):
        assert secret not in text


@respx.mock
def test_default_transport_under_respx() -> None:
    route = respx.post(f"{BASE_URL}/api/v1/payment/intent").mock(
        side_effect=[httpx.Response(503), httpx.Response(201, json=intent_json())]
    )
    no_wait = paygate.Backoff(initial_delay=0.0, max_delay=0.0)
    with paygate.Client(API_KEY, SIGNING_SECRET, BASE_URL, backoff=no_wait) as client:
        intent = client.payment_intents.create(amount=1, currency="USD", product_details={})
    assert intent.id == "pi_123"
    assert route.call_count == 2
    first, second = (call.request for call in route.calls)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert first.headers["x-request-nonce"] != second.headers["x-request-nonce"]
