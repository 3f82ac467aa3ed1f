"""A signed HTTP client for tests, built on the SDK's signing (an implementation the
server does not get to choose), with knobs to break each part of a request on purpose."""
from __future__ import annotations

import json as stdlib_json
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx

from paygate._signing import compute_signature, format_timestamp
from paygate_server.intents.schemas import OUTCOME_STATUSES
from tests.support.eventually import eventually

__all__ = ["Credentials", "SignedClient"]


@dataclass(frozen=True)
class Credentials:
    merchant_id: str
    api_key: str
    signing_secret: str


class SignedClient:
    def __init__(self, http: httpx.AsyncClient, creds: Credentials) -> None:
        self.http = http
        self.creds = creds

    def headers_for(self, method: str, target: str, body: bytes, *, timestamp: str | None = None,
                    nonce: str | None = None, secret: str | None = None) -> dict[str, str]:
        timestamp = timestamp or format_timestamp()
        nonce = nonce or uuid.uuid4().hex
        signature = compute_signature(secret or self.creds.signing_secret, method, target, timestamp, nonce, body)
        return {
            "Authorization": f"Bearer {self.creds.api_key}",
            "X-Request-Timestamp": timestamp,
            "X-Request-Nonce": nonce,
            "X-Signature": signature,
            "Content-Type": "application/json",
        }

    async def request(self, method: str, target: str, json: Any = None, *, body: bytes | None = None,
                      idempotency_key: str | None = None, headers: dict[str, str] | None = None,
                      send_body: bytes | None = None, send_target: str | None = None,
                      **sign: Any) -> httpx.Response:
        """Sign ``body`` for ``target``; ``send_body``/``send_target`` send something else."""
        if body is None:
            # The standard library, not orjson: tests send what orjson refuses (huge ints, Infinity).
            body = b"" if json is None else stdlib_json.dumps(json, separators=(",", ":")).encode()
        all_headers = self.headers_for(method, target, body, **sign)
        if idempotency_key is not None:
            all_headers["Idempotency-Key"] = idempotency_key
        all_headers.update(headers or {})
        return await self.http.request(
            method, send_target or target,
            content=send_body if send_body is not None else body, headers=all_headers,
        )

    async def post(self, target: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("POST", target, json, **kw)

    async def get(self, target: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", target, **kw)

    async def create_intent(self, amount: int = 1999, currency: str = "USD", **extra: Any) -> dict[str, Any]:
        body = {"amount": amount, "currency": currency, "productDetails": {"sku": "mug-01", "name": "Mug"}, **extra}
        response = await self.post("/api/v1/payment/intent", body)
        assert response.status_code == 201, response.text
        return response.json()

    async def final_status(self, intent_id: str, *, timeout: float = 30.0,
                           until: Collection[str] = OUTCOME_STATUSES) -> dict[str, Any]:
        """The intent's status once its attempt has an outcome (final, or failed), long-polling
        the status endpoint. "failed" is not final for the long-poll (the intent may be
        processed again): the first look does not wait."""
        waits = iter([0])

        async def look() -> dict[str, Any]:
            target = f"/api/v1/payment/status?paymentIntentId={intent_id}&wait={next(waits, 5)}"
            status: dict[str, Any] = (await self.get(target)).json()
            return status

        return await eventually(look, until=lambda s: s.get("status") in until, timeout=timeout,
                                interval=0, what=f"{intent_id} to be final")  # the long-poll paces it
