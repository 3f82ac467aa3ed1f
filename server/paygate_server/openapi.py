"""The OpenAPI 3.1 document for ``/api/v1`` (served at ``GET /api/v1/openapi.json``).

Written as data next to the code it describes; ``tests/server/test_openapi.py`` keeps the
two in sync (every route documented, every documented route real, examples valid).
"""
from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.errors import CODES
from paygate_server.intents.history import EVENT_TYPES
from paygate_server.intents.schemas import CAPTURE_METHODS, STATUSES
from paygate_server.processing.schemas import ATTEMPT_KINDS

__all__ = ["COMMON_ERROR_STATUSES", "document", "openapi_endpoint", "register"]

_STATUS = {"type": "string", "enum": list(STATUSES)}
_TIME = {"type": "string", "format": "date-time"}
_CAPTURE_METHOD = {"type": "string", "enum": list(CAPTURE_METHODS), "default": "automatic"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["type", "code", "message", "requestId"],
            "properties": {
                "type": {"type": "string", "enum": sorted({t for _, t in CODES.values()})},
                "code": {"type": "string", "enum": sorted(CODES)},
                "message": {"type": "string"},
                "param": {"type": "string"},
                "requestId": {"type": "string"},
            },
        }},
    },
    "Card": {
        "type": ["object", "null"], "additionalProperties": False,  # never more of a card than this
        "properties": {
            "brand": {"type": "string"}, "last4": {"type": "string"},
            "expMonth": {"type": "integer"}, "expYear": {"type": "integer"},
        },
    },
    "LastError": {
        "type": ["object", "null"],
        "properties": {
            "code": {"type": "string"}, "declineCode": {"type": ["string", "null"]},
            "message": {"type": "string"},
        },
    },
    "Metadata": {
        "type": "object", "maxProperties": 20,
        "propertyNames": {"minLength": 1, "maxLength": 40},
        "additionalProperties": {"type": "string", "maxLength": 500},
    },
    "PaymentIntent": {
        "type": "object",
        "required": ["paymentIntentId", "merchantId", "status", "amount", "currency",
                     "captureMethod", "amountCapturable", "amountReceived", "amountRefunded",
                     "cancellationReason", "lastError", "card", "createdAt", "updatedAt"],
        "properties": {
            "paymentIntentId": {"type": "string", "pattern": "^pi_"},
            "merchantId": {"type": "string", "pattern": "^mer_"},
            "status": _STATUS,
            "amount": {"type": "integer", "minimum": 1, "maximum": 99999999},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "captureMethod": _CAPTURE_METHOD,
            "amountCapturable": {"type": "integer", "minimum": 0,
                                 "description": "Held and capturable: non-zero only in requires_capture."},
            "amountReceived": {"type": "integer", "minimum": 0, "description": "Charged or captured."},
            "amountRefunded": {"type": "integer", "minimum": 0},
            "cancellationReason": {"type": ["string", "null"], "enum": ["requested", "expired", None]},
            "productDetails": {"type": ["object", "null"]},
            "description": {"type": ["string", "null"]},
            "metadata": {"$ref": "#/components/schemas/Metadata"},
            "clientSecret": {"type": "string", "description": "Returned by create only."},
            "lastError": {"$ref": "#/components/schemas/LastError"},
            "card": {"$ref": "#/components/schemas/Card"},
            "createdAt": _TIME,
            "updatedAt": _TIME,
        },
    },
    "PaymentStatus": {
        "type": "object",
        "required": ["paymentIntentId", "status", "amount", "currency", "amountRefunded",
                     "lastError", "updatedAt"],
        "properties": {
            "paymentIntentId": {"type": "string"}, "status": _STATUS,
            "amount": {"type": "integer"}, "currency": {"type": "string"},
            "amountRefunded": {"type": "integer"},
            "lastError": {"$ref": "#/components/schemas/LastError"}, "updatedAt": _TIME,
        },
    },
    "PaymentIntentList": {
        "type": "object", "required": ["data", "hasMore"],
        "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/PaymentIntent"}},
            "hasMore": {"type": "boolean"},
        },
    },
    "CreatePaymentIntent": {
        "type": "object", "additionalProperties": False,
        "required": ["amount", "currency", "productDetails"],
        "properties": {
            "amount": {"type": "integer", "minimum": 1, "maximum": 99999999},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "productDetails": {"type": "object", "description": "At most 8 KiB of JSON."},
            "merchantId": {"type": "string"},
            "description": {"type": "string", "maxLength": 1000},
            "metadata": {"$ref": "#/components/schemas/Metadata"},
            "captureMethod": _CAPTURE_METHOD,
        },
    },
    "CapturePayment": {
        "type": "object", "additionalProperties": False, "required": ["paymentIntentId"],
        "properties": {
            "paymentIntentId": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1,
                       "description": "Default: all of amountCapturable; the rest of the hold is released."},
        },
    },
    "IntentReference": {
        "type": "object", "additionalProperties": False, "required": ["paymentIntentId"],
        "properties": {"paymentIntentId": {"type": "string"}},
    },
    "ProcessPayment": {
        "type": "object", "additionalProperties": False,
        "required": ["paymentIntentId", "paymentMethod", "paymentDetails"],
        "properties": {
            "paymentIntentId": {"type": "string"},
            "paymentMethod": {"const": "card"},
            "paymentDetails": {"oneOf": [
                {"type": "object", "additionalProperties": False, "required": ["token"],
                 "properties": {"token": {"type": "string", "pattern": "^tok_"}}},
                {"type": "object", "additionalProperties": False, "required": ["encryptedCard"],
                 "properties": {"encryptedCard": {"type": "string", "description":
                     "JWE compact serialization, RSA-OAEP-256 + A256GCM, to a key of GET /checkout/v1/keys"}}},
            ]},
        },
    },
    "CreateRefund": {
        "type": "object", "additionalProperties": False, "required": ["paymentIntentId"],
        "properties": {
            "paymentIntentId": {"type": "string"},
            "amount": {"type": "integer", "minimum": 1, "description": "Default: what remains refundable."},
            "reason": {"type": "string", "maxLength": 200},
        },
    },
    "Refund": {
        "type": "object", "required": ["refundId", "paymentIntentId", "amount", "status"],
        "properties": {
            "refundId": {"type": "string", "pattern": "^re_"}, "paymentIntentId": {"type": "string"},
            "amount": {"type": "integer"}, "currency": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "unknown", "succeeded", "failed"]},
            "reason": {"type": ["string", "null"]},
            "failureReason": {"type": ["string", "null"], "description":
                              "Why a failed refund failed, in the processor's words; null unless failed."},
        },
    },
    "Attempt": {
        "type": "object", "additionalProperties": False,
        "required": ["attemptId", "paymentIntentId", "kind", "status", "amount", "currency", "card",
                     "declineCode", "createdAt", "updatedAt"],
        "properties": {
            "attemptId": {"type": "string", "pattern": "^txn_"},
            "paymentIntentId": {"type": "string", "pattern": "^pi_"},
            "kind": {"type": "string", "enum": list(ATTEMPT_KINDS)},
            "status": {"type": "string", "enum": ["pending", "unknown", "succeeded", "failed"]},
            "amount": {"type": "integer"}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "card": {"$ref": "#/components/schemas/Card"}, "declineCode": {"type": ["string", "null"]},
            "createdAt": _TIME, "updatedAt": _TIME,
        },
    },
    "HistoryEvent": {
        "type": "object", "additionalProperties": False,
        "required": ["sequence", "type", "objectId", "data", "createdAt"],
        "properties": {
            "sequence": {"type": "integer", "minimum": 1, "description": "Per intent, gap-free."},
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "objectId": {"type": "string"}, "data": {"type": "object"}, "createdAt": _TIME,
        },
        # ``data`` is the object of ``type`` in its API shape (an intent never with its clientSecret).
        "oneOf": [
            {"properties": {"type": {"enum": [f"{kind}.created", f"{kind}.updated"]}, "data": data}}
            for kind, data in (
                ("payment_intent", {"$ref": "#/components/schemas/PaymentIntent",
                                    "not": {"required": ["clientSecret"]}}),
                ("attempt", {"$ref": "#/components/schemas/Attempt"}),
                ("refund", {"$ref": "#/components/schemas/Refund"}),
            )
        ],
    },
    "History": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "description": "Oldest first.",
                                "items": {"$ref": "#/components/schemas/HistoryEvent"}}},
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


_ERROR_CODES_BY_STATUS: dict[int, list[str]] = {}
for _code, (_status, _) in CODES.items():
    _ERROR_CODES_BY_STATUS.setdefault(_status, []).append(_code)


# What any operation may answer: a malformed request, its credentials, its size, the rate
# limit, a bug, the database unavailable (503 + Retry-After, docs/api.md "Errors").
COMMON_ERROR_STATUSES = (400, 401, 413, 429, 500, 503)


def _errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in (*COMMON_ERROR_STATUSES, *statuses):
        codes = ", ".join(_ERROR_CODES_BY_STATUS.get(status, []))
        out[str(status)] = {"description": f"Error ({codes})", **_json(_ref("Error"))}
    return out


_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_INTENT_PATH = {"name": "intent_id", "in": "path", "required": True, "schema": {"type": "string"}}
_REFUND_PATH = {"name": "refund_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _q(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _operation(operation_id: str, summary: str, parameters: list[dict[str, Any]], body: str | None,
               answer: tuple[str, str, dict[str, Any]], *errors: int) -> dict[str, Any]:
    """``body``: the JSON request body's schema, if any; ``answer``: (status, description, content)."""
    status, description, content = answer
    request = {"requestBody": {"required": True, **_json(_ref(body))}} if body else {}
    return {"operationId": operation_id, "summary": summary, "parameters": parameters, **request,
            "responses": {status: {"description": description, **content}, **_errors(*errors)}}


PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/payment/intent": {"post": _operation(
        "createPaymentIntent", "Create a payment intent", [_IDEMPOTENCY], "CreatePaymentIntent",
        ("201", "Created", _json(_ref("PaymentIntent"))), 409, 422)},
    "/api/v1/payment/intent/{intent_id}": {"get": _operation(
        "getPaymentIntent", "Retrieve a payment intent", [_INTENT_PATH], None,
        ("200", "The intent", _json(_ref("PaymentIntent"))), 404)},
    "/api/v1/payment/intent/{intent_id}/history": {"get": _operation(
        "getPaymentIntentHistory", "Every change of an intent, oldest first", [_INTENT_PATH], None,
        ("200", "History", _json(_ref("History"))), 404)},
    "/api/v1/payment/intents": {"get": _operation(
        "listPaymentIntents", "List intents, newest first",
        [_q("limit", {"type": "integer", "minimum": 1, "maximum": 100}), _q("startingAfter", {"type": "string"}),
         _q("status", _STATUS)], None,
        ("200", "A page", _json(_ref("PaymentIntentList"))), 404)},  # 404: a malformed startingAfter
    "/api/v1/payment/cancel": {"post": _operation(
        "cancelPaymentIntent",
        "Cancel a created or failed intent, or void a requires_capture one's authorization", [_IDEMPOTENCY], "IntentReference",
        ("200", "Canceled", _json(_ref("PaymentIntent"))), 404, 409, 422)},
    "/api/v1/payment/process": {"post": _operation(
        "processPayment", "Charge the intent with a token or an encrypted card", [_IDEMPOTENCY], "ProcessPayment",
        ("200", "The intent: in_progress, or final (requires_capture for a manual capture) if the processor "
         "answered within the wait budget", _json(_ref("PaymentIntent"))), 404, 409, 422)},
    "/api/v1/payment/capture": {"post": _operation(
        "capturePayment", "Capture all or part of a requires_capture intent's hold", [_IDEMPOTENCY], "CapturePayment",
        ("200", "The intent: succeeded, or in_progress if the processor has not answered within the wait budget",
         _json(_ref("PaymentIntent"))), 404, 409, 422)},
    "/api/v1/payment/refund": {"post": _operation(
        "refundPayment", "Refund all or part of what a succeeded intent received", [_IDEMPOTENCY], "CreateRefund",
        ("200", "The refund", _json(_ref("Refund"))), 404, 409, 422)},
    "/api/v1/payment/refund/{refund_id}": {"get": _operation(
        "getRefund", "Retrieve a refund (a pending or unknown one settles later)", [_REFUND_PATH], None,
        ("200", "The refund", _json(_ref("Refund"))), 404)},
    "/api/v1/payment/status": {"get": _operation(
        "getPaymentStatus", "Status, with an optional long-poll",
        [_q("paymentIntentId", {"type": "string"}, True), _q("wait", {"type": "integer", "minimum": 0, "maximum": 60})],
        None, ("200", "Status", _json(_ref("PaymentStatus"))), 404)},
    "/api/v1/payment/status/stream": {"get": _operation(
        "streamPaymentStatus", "Server-sent status events, one per status change, until a final status or requires_capture",
        [_q("paymentIntentId", {"type": "string"}, True)],
        None, ("200", "text/event-stream of `status` events (data: PaymentStatus)",
               {"content": {"text/event-stream": {"schema": {"type": "string"}}}}), 404)},
}


def register(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> None:
    """Other domains describe their endpoints here, next to their own code."""
    for path, operations in paths.items():
        PATHS.setdefault(path, {}).update(operations)
    SCHEMAS.update(schemas)


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "paygate API", "version": "1"},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"signedRequest": {
                "type": "http", "scheme": "bearer",
                "description": "API key as bearer token, plus X-Request-Timestamp, X-Request-Nonce "
                               "and X-Signature (HMAC-SHA256, see SPEC §3) on every request.",
            }},
        },
        "security": [{"signedRequest": []}],
        "paths": PATHS,
    }


async def openapi_endpoint(request: Request) -> Response:
    return Response(jsoncodec.dumps(document()), media_type="application/json")
