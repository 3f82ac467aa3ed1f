"""The SDK against a real gateway and simulator (sync and async), end to end."""
from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

import pytest

import paygate
from tests.e2e.conftest import Stack


def test_sync_client_pays_waits_refunds(stack: Stack) -> None:
    creds = stack.merchant()
    with paygate.Client(creds.api_key, creds.signing_secret, stack.gateway.base_url) as client:
        intent = client.payment_intents.create(amount=2500, currency="EUR", product_details={"sku": "tee"},
                                               metadata={"orderId": "77"})
        assert intent.status == "created" and intent.client_secret
        encrypted = client.encrypt_card(number="4000000000001026", exp_month=12, exp_year=2034, cvc="123")
        processed = client.payment_intents.process(intent.id, encrypted_card=encrypted)
        assert processed.status == "in_progress"  # the answer was lost: the reconciler settles it
        final = client.payment_intents.wait_for_status(intent.id, timeout=30)
        assert final.status == "succeeded"
        refund = client.refunds.create(intent.id, amount=1000, reason="requested_by_customer")
        assert (refund.amount, refund.status) == (1000, "succeeded")
        again = client.payment_intents.get(intent.id)
        assert again.amount_refunded == 1000 and again.card is not None and again.card.last4 == "1026"
        history = client.payment_intents.history(intent.id)
        assert history and history[0].sequence == 1
        with pytest.raises(paygate.InvalidRequestError) as err:
            client.payment_intents.get("pi_doesnotexist000000000000")
        assert err.value.code == "resource_missing" and err.value.http_status == 404 and err.value.request_id
        with pytest.raises(paygate.InvalidRequestError) as err:
            client.payment_intents.cancel(intent.id)
        assert err.value.code == "intent_state_conflict"


def test_async_client_declines_then_succeeds_and_streams(stack: Stack) -> None:
    creds = stack.merchant()

    async def run() -> None:
        async with paygate.AsyncClient(creds.api_key, creds.signing_secret, stack.gateway.base_url) as client:
            intent = await client.payment_intents.create(amount=990, currency="USD", product_details={"sku": "mug"})
            declined = await client.payment_intents.process(
                intent.id, encrypted_card=await client.encrypt_card(
                    number="4000000000009995", exp_month=1, exp_year=2035, cvc="321"))
            assert declined.status == "failed"
            assert declined.last_error is not None and declined.last_error.decline_code == "insufficient_funds"
            with pytest.raises(paygate.CardError):
                declined.raise_if_failed()
            slow = await client.encrypt_card(number="4000000000001042", exp_month=1, exp_year=2035, cvc="321")
            stream = client.payment_intents.stream_status(intent.id)
            processing = asyncio.create_task(client.payment_intents.process(intent.id, encrypted_card=slow))
            seen = [s.status async for s in stream]
            assert seen[-1] == "succeeded"
            assert (await processing).status == "succeeded"
            page = await client.payment_intents.list(limit=1)
            assert page.data[0].id == intent.id
            refund = await client.refunds.create(intent.id)
            assert refund.amount == 990 and refund.status == "succeeded"

    asyncio.run(run())


def test_sdk_is_refused_with_a_revoked_or_wrong_secret(stack: Stack) -> None:
    creds = stack.merchant()
    with paygate.Client(creds.api_key, "sk_test_" + "x" * 40, stack.gateway.base_url, max_retries=0) as client:
        with pytest.raises(paygate.AuthenticationError) as err:
            client.payment_intents.list()
        assert err.value.code == "invalid_signature"


def test_webhook_endpoints_through_the_sdk(stack: Stack) -> None:
    creds = stack.merchant()
    with paygate.Client(creds.api_key, creds.signing_secret, stack.gateway.base_url) as client:
        # The gateway refuses private addresses unless the operator allows them.
        with pytest.raises(paygate.InvalidRequestError) as err:
            client.webhook_endpoints.create("http://127.0.0.1:9/hooks")
        assert err.value.http_status == 400
        endpoint = client.webhook_endpoints.create(
            "https://93.184.216.34/hooks", events=["payment_intent.succeeded"])  # public, no DNS needed
        assert endpoint.secret and endpoint.secret.startswith("whsec_")
        assert [e.id for e in client.webhook_endpoints.list().data] == [endpoint.id]
        # Paged like the intents: newest first, limit and starting_after as the gateway takes them.
        more = [client.webhook_endpoints.create(f"https://93.184.216.34/hooks/{n}") for n in range(2)]
        first = client.webhook_endpoints.list(limit=2)
        assert [e.id for e in first.data] == [more[1].id, more[0].id] and first.has_more
        rest = client.webhook_endpoints.list(limit=2, starting_after=first.data[-1].id)
        assert [e.id for e in rest.data] == [endpoint.id] and not rest.has_more
        for made in (endpoint, *more):
            client.webhook_endpoints.delete(made.id)
        assert client.webhook_endpoints.list().data == ()


def test_a_bare_question_mark_is_not_part_of_the_signed_target(stack: Stack) -> None:
    """docs/api.md, "Signing every request": the server cannot tell ``/path?`` from ``/path``
    (the ASGI scope has an empty query either way), so a request sent with a bare ``?`` is
    verified against the target without it — the SDK never sends one."""
    creds = stack.merchant()
    sent = "/api/v1/payment/intents?"

    def send(signed_as: str) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {creds.api_key}",
                   **paygate.sign_request(creds.signing_secret, "GET", signed_as, b"")}
        host, port = stack.gateway.base_url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request("GET", sent, headers=headers)  # the target goes on the wire as written
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    status, body = send("/api/v1/payment/intents")
    assert status == 200 and body == {"data": [], "hasMore": False}, body
    status, body = send(sent)
    assert status == 401 and body["error"]["code"] == "invalid_signature", body
