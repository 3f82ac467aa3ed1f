"""Payment intent request validation and wire rendering (camelCase, SPEC §4)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.clock import to_rfc3339
from paygate_server.currencies import MAX_AMOUNT, currency_problem
from paygate_server.errors import ApiError
from paygate_server.validation import (
    json_object_param,
    optional_str,
    reject_unknown,
    require,
    require_int,
)

__all__ = [
    "CAPTURE_METHODS",
    "STATUSES",
    "FINAL_STATUSES",
    "OUTCOME_STATUSES",
    "RESTING_STATUSES",
    "CreateIntent",
    "parse_create",
    "render_intent",
    "render_status",
    "MAX_AMOUNT",
]

STATUSES = ("created", "in_progress", "requires_capture", "succeeded", "failed", "canceled")
CAPTURE_METHODS = ("automatic", "manual")
FINAL_STATUSES = frozenset({"succeeded", "canceled"})
# Where a waiter stops (``wait``, the status stream): final, or waiting for the merchant.
RESTING_STATUSES = FINAL_STATUSES | {"requires_capture"}
# Where one processing attempt has ended: final, or declined — ``failed`` is not final (the
# intent may be processed again with another card) but a client driving one attempt (the
# bench, the tests) stops there.
OUTCOME_STATUSES = FINAL_STATUSES | {"failed"}
PRODUCT_DETAILS_MAX_BYTES = 8 * 1024
DESCRIPTION_MAX = 1000
METADATA_MAX_KEYS = 20
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


@dataclass(frozen=True, slots=True)
class CreateIntent:
    amount: int
    currency: str
    product_details: dict[str, Any]
    description: str | None
    metadata: dict[str, str]
    capture_method: str = "automatic"


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError("parameter_invalid", "metadata must be an object of strings", param="metadata")
    if len(value) > METADATA_MAX_KEYS:
        raise ApiError("parameter_invalid", f"metadata has at most {METADATA_MAX_KEYS} keys", param="metadata")
    for key, item in value.items():
        if not 1 <= len(key) <= METADATA_KEY_MAX:
            raise ApiError("parameter_invalid", f"metadata keys are 1 to {METADATA_KEY_MAX} characters", param="metadata")
        if not isinstance(item, str) or len(item) > METADATA_VALUE_MAX:
            raise ApiError("parameter_invalid", f"metadata values are strings of at most {METADATA_VALUE_MAX} characters", param="metadata")
    return value


def parse_create(body: dict[str, Any], merchant_id: str) -> CreateIntent:
    reject_unknown(body, ("amount", "currency", "productDetails", "merchantId", "description", "metadata",
                          "captureMethod"))
    amount = require_int(body, "amount", minimum=1, maximum=MAX_AMOUNT)
    currency = require(body, "currency")
    problem = currency_problem(currency)
    if problem is not None:
        raise ApiError("parameter_invalid", problem, param="currency")
    require(body, "productDetails")
    product_details = json_object_param(body, "productDetails", max_bytes=PRODUCT_DETAILS_MAX_BYTES)
    assert product_details is not None
    if body.get("merchantId") is not None and body["merchantId"] != merchant_id:
        raise ApiError("parameter_invalid", "merchantId must be the merchant of the API key", param="merchantId")
    # At most 1000 characters (docs/api.md, the OpenAPI document): the empty text is one.
    description = optional_str(body, "description", max_len=DESCRIPTION_MAX, min_len=0)
    capture_method = body.get("captureMethod")
    if capture_method is None:  # absent or null: the default, as for every optional field
        capture_method = "automatic"
    if capture_method not in CAPTURE_METHODS:
        raise ApiError("parameter_invalid", 'captureMethod must be "automatic" or "manual"', param="captureMethod")
    return CreateIntent(amount, currency, product_details, description, _metadata(body), capture_method)


def _json_or_none(text: str | None) -> Any:
    return None if text is None else jsoncodec.loads(text)


def render_intent(row: Mapping[str, Any], *, client_secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "paymentIntentId": row["id"],
        "merchantId": row["merchant_id"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        # A snapshot captured before manual capture existed (0004) has none of these.
        "captureMethod": row["capture_method"] or "automatic",
        "amountCapturable": row["amount_capturable"] or 0,
        "amountReceived": row["amount_received"] or 0,
        "amountRefunded": row["amount_refunded"],
        "cancellationReason": row["cancellation_reason"],
        "productDetails": _json_or_none(row["product_details"]),
        "description": row["description"],
        "metadata": _json_or_none(row["metadata"]) or {},
        "lastError": _json_or_none(row["last_error"]),
        "card": _json_or_none(row["card"]),
        "createdAt": to_rfc3339(row["created_at"]),
        "updatedAt": to_rfc3339(row["updated_at"]),
    }
    if client_secret is not None:
        out["clientSecret"] = client_secret
    return out


def render_status(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "paymentIntentId": row["id"],
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "amountRefunded": row["amount_refunded"],
        "lastError": _json_or_none(row["last_error"]),
        "updatedAt": to_rfc3339(row["updated_at"]),
    }
