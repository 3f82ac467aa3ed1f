"""API errors in the one shape SPEC §2 fixes.

Every failure a client can cause is an :class:`ApiError` raised anywhere below an endpoint
and rendered by :func:`error_body`. The codes are the contract; the HTTP status and the
error ``type`` follow from the code, so a call site names only the code::

    raise ApiError("parameter_invalid", "amount must be a positive integer", param="amount")
"""
from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "CODES", "error_body"]

# code -> (HTTP status, error type). SPEC §2 table.
CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "invalid_request_error"),
    "parameter_missing": (400, "invalid_request_error"),
    "parameter_invalid": (400, "invalid_request_error"),
    "plaintext_card_data": (400, "invalid_request_error"),
    "token_invalid": (400, "invalid_request_error"),
    "missing_credentials": (401, "authentication_error"),
    "invalid_api_key": (401, "authentication_error"),
    "invalid_signature": (401, "authentication_error"),
    "stale_timestamp": (401, "authentication_error"),
    "nonce_reused": (401, "authentication_error"),
    "resource_missing": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "intent_state_conflict": (409, "invalid_request_error"),
    "idempotency_request_in_progress": (409, "invalid_request_error"),
    "body_too_large": (413, "invalid_request_error"),
    # Answered by the HTTP server before the app (headerguard.py writes it itself: the
    # storefront runs on it too); listed so the OpenAPI document names it.
    "headers_too_large": (431, "invalid_request_error"),
    "idempotency_key_reused": (422, "idempotency_error"),
    "rate_limited": (429, "rate_limit_error"),
    "internal_error": (500, "api_error"),
    "service_unavailable": (503, "api_error"),
}


class ApiError(Exception):
    """A client-visible error: the code decides the HTTP status and type."""

    def __init__(self, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type = CODES[code]
        self.code = code
        self.message = message
        self.param = param
        self.headers = headers or {}


def error_body(code: str, message: str, request_id: str, *, param: str | None = None) -> dict[str, Any]:
    _, type_ = CODES[code]
    error: dict[str, Any] = {"type": type_, "code": code, "message": message}
    if param is not None:
        error["param"] = param
    error["requestId"] = request_id
    return {"error": error}
