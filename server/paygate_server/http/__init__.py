"""HTTP plumbing shared by every API endpoint: request ids, body limits, authentication,
JSON parsing, error rendering and idempotency."""
from __future__ import annotations

from paygate_server.http.api import ApiContext, api_endpoint, json_response
from paygate_server.http.middleware import RequestIdMiddleware, request_id_of

__all__ = ["ApiContext", "api_endpoint", "json_response", "RequestIdMiddleware", "request_id_of"]
