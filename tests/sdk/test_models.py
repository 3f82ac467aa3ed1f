"""Typed results: camelCase in, snake_case out, unknown fields kept, secrets out of repr,
lenient parsing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

import paygate

from .conftest import intent_json, status_json


def test_intent_with_card_and_last_error() -> None:
    intent = paygate.PaymentIntent.from_dict(
        intent_json(
            status="succeeded",
            amountRefunded=500,
            clientSecret="pi_123_secret_s3cr3t",
            card={
                "brand": "visa",
                "last4": "4242",
                "expMonth": 12,
                "expYear": 2030,
                "funding": "x",
            },
            lastError={"code": "card_declined", "declineCode": "generic_decline", "message": "no"},
        )
    )
    assert intent.card == paygate.Card("visa", "4242", 12, 2030)
    assert intent.card.raw["funding"] == "x"
    assert intent.last_error is not None and intent.last_error.decline_code == "generic_decline"
    assert intent.amount_refunded == 500
    assert intent.is_final
    assert intent.updated_at == datetime(2023, 10, 15, 14, 22, 31, tzinfo=UTC)


def test_repr_hides_secrets_and_raw() -> None:
    intent = paygate.PaymentIntent.from_dict(intent_json(clientSecret="pi_123_secret_s3cr3t"))
    text = repr(intent)
    assert "s3cr3t" not in text and "raw=" not in text
    assert "pi_123" in text and "created" in text
    endpoint = paygate.WebhookEndpoint.from_dict(
        {"webhookEndpointId": "we_1", "secret": "whsec_dG9wc2VjcmV0"}
    )
    assert "dG9wc2VjcmV0" not in repr(endpoint)


def test_models_are_frozen() -> None:
    intent = paygate.PaymentIntent.from_dict(intent_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        intent.status = "succeeded"  # type: ignore[misc]


def test_lenient_parsing_of_odd_fields() -> None:
    intent = paygate.PaymentIntent.from_dict(
        {
            "paymentIntentId": "pi_1",
            "status": "some_future_status",
            "createdAt": "not a time",
            "metadata": {"n": 1},
            "card": "??",
            "lastError": 5,
            "amountReceived": None,
        }
    )
    assert intent.status == "some_future_status"
    assert intent.amount is None and intent.created_at is None
    assert intent.metadata == {"n": "1"}
    assert intent.card is None and intent.last_error is None and intent.amount_refunded == 0
    assert intent.amount_received is None
    assert not intent.is_final


MONEY_FIELDS = [
    (paygate.PaymentIntent, "amount"),
    (paygate.PaymentIntent, "amountRefunded"),
    (paygate.PaymentIntent, "amountCapturable"),
    (paygate.PaymentIntent, "amountReceived"),
    (paygate.PaymentStatus, "amount"),
    (paygate.PaymentStatus, "amountRefunded"),
    (paygate.Refund, "amount"),
    (paygate.Attempt, "amount"),
]


@pytest.mark.parametrize("model, key", MONEY_FIELDS)
@pytest.mark.parametrize("value", [19.99, 1999.0, "1999", True, [1999], {"value": 1999}])
def test_an_amount_that_is_not_an_integer_is_refused(model: Any, key: str, value: Any) -> None:
    # Was: None (or 0 for amountRefunded) without a word: "amountRefunded": "500" read as
    # nothing refunded.
    with pytest.raises(paygate.APIError, match=key):
        model.from_dict(intent_json(**{key: value}))


@pytest.mark.parametrize("model, key", MONEY_FIELDS)
def test_amounts_are_kept_exactly_however_large(model: Any, key: str) -> None:
    parsed = model.from_dict(intent_json(**{key: 10**30}))
    attribute = {"amountRefunded": "amount_refunded", "amountCapturable": "amount_capturable",
                 "amountReceived": "amount_received"}.get(key, "amount")
    assert getattr(parsed, attribute) == 10**30


def test_status_model() -> None:
    status = paygate.PaymentStatus.from_dict(status_json("canceled", extra=1))
    assert status.id == "pi_123" and status.is_final and status.raw["extra"] == 1
    assert status.raise_if_failed() is status


def test_card_error_without_last_error() -> None:
    status = paygate.PaymentStatus.from_dict(status_json("failed"))
    with pytest.raises(paygate.CardError) as info:
        status.raise_if_failed()
    assert info.value.code is None and info.value.message == "the payment attempt failed"


def test_status_constants() -> None:
    assert paygate.FINAL_STATUSES == {"succeeded", "canceled"}
    assert paygate.DEFAULT_WAIT_STATUSES == {
        "succeeded",
        "canceled",
        "failed",
        "requires_capture",
    }
    assert paygate.STREAM_END_STATUSES == {"succeeded", "canceled", "requires_capture"}
    assert {s.value for s in paygate.IntentStatus} == {
        "created",
        "in_progress",
        "requires_capture",
        "succeeded",
        "failed",
        "canceled",
    }
    assert paygate.IntentStatus.IN_PROGRESS == "in_progress"
    assert str(paygate.IntentStatus.IN_PROGRESS) == "in_progress"


def test_page() -> None:
    page = paygate.Page(data=(1, 2), has_more=False)
    assert list(page) == [1, 2] and len(page) == 2
