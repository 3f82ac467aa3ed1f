"""The merchant the hostile-input tests fuzz (tests/e2e/test_hostile_api.py,
tests/e2e/test_hostile_fields.py): a signed client over a real gateway, and the look-ups
that say what a request wrote — so "a refused request wrote nothing" is checked the same
way by every hostile test."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from paygate._signing import compute_signature, format_timestamp
from tests.support.eventually import eventually_sync

__all__ = ["Shop"]


@dataclass
class Shop:
    """The merchant being fuzzed, with real objects for requests to name: a canceled intent
    (final: a status wait or stream on it answers at once), a created intent (the target of
    the POSTs, checked unchanged after every refusal) and a webhook endpoint."""
    http: httpx.Client
    merchant_id: str
    api_key: str
    secret: str
    final: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    endpoint_id: str = ""

    def headers(self, method: str, target: str, body: bytes, **override: str) -> dict[str, str]:
        timestamp = override.pop("timestamp", None) or format_timestamp()
        nonce = override.pop("nonce", None) or uuid.uuid4().hex
        return {"Authorization": f"Bearer {self.api_key}", "X-Request-Timestamp": timestamp,
                "X-Request-Nonce": nonce, "Content-Type": "application/json",
                "X-Signature": compute_signature(self.secret, method, target, timestamp, nonce, body), **override}

    def call(self, method: str, target: str, body: Any = None) -> httpx.Response:
        # The standard library's encoder: it writes what orjson refuses (integers past 64
        # bits, NaN), which is what hostile bodies hold.
        raw = b"" if body is None else json.dumps(body).encode()
        return self.http.request(method, target, content=raw, headers=self.headers(method, target, raw))

    def create_intent(self, **fields: Any) -> dict[str, Any]:
        r = self.call("POST", "/api/v1/payment/intent",
                      {"amount": 1999, "currency": "USD", "productDetails": {"sku": "mug"}, **fields})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def new_target(self) -> None:
        self.target = self.create_intent()

    def intent(self, intent_id: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/v1/payment/intent/{intent_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def history(self, intent_id: str) -> list[dict[str, Any]]:
        r = self.call("GET", f"/api/v1/payment/intent/{intent_id}/history")
        assert r.status_code == 200, r.text
        return list(r.json()["data"])

    def newest_intent(self) -> str:
        r = self.call("GET", "/api/v1/payment/intents?limit=1")
        assert r.status_code == 200, r.text
        return str(r.json()["data"][0]["paymentIntentId"])

    def endpoints(self) -> list[str]:
        r = self.call("GET", "/api/v1/webhooks")
        assert r.status_code == 200, r.text
        return sorted(e["webhookEndpointId"] for e in r.json()["data"])

    def settled(self, intent_id: str, statuses: frozenset[str]) -> dict[str, Any]:
        """The intent once its status is one of ``statuses`` (the processor has answered)."""
        return eventually_sync(lambda: self.intent(intent_id), until=lambda i: i["status"] in statuses,
                               what=f"{intent_id} to reach one of {sorted(statuses)}")
