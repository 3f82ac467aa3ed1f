"""Storefront unit tests: the shop in-process (httpx ASGITransport) in front of a fake
gateway (an ``httpx.MockTransport`` under the real SDK)."""
from __future__ import annotations

import base64
import contextlib
import json
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

STOREFRONT_DIR = Path(__file__).resolve().parents[2] / "examples" / "storefront"
if str(STOREFRONT_DIR) not in sys.path:
    sys.path.insert(0, str(STOREFRONT_DIR))

from storefront import StorefrontConfig, create_app  # noqa: E402 - needs the sys.path entry above

ADMIN_PASSWORD = "correct horse battery"
SHOP = "http://shop.test"


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _now(offset_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class FakeGateway:
    """Just enough of the merchant API for the shop. A token's name decides the outcome:
    ``tok_ok…`` succeeds, ``tok_nsf…`` is declined for insufficient funds, ``tok_slow…``
    stays in_progress until ``settle()``; ``tok_lost…`` starts the payment (in_progress)
    but no answer ever reaches the shop (every try times out)."""

    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    idempotent: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    captures: list[tuple[str, int]] = field(default_factory=list)
    voids: list[str] = field(default_factory=list)
    #: What the processor says to the next refunds: ``succeeded``, ``pending``/``unknown``
    #: (reserved until it confirms) or ``failed`` (nothing refunded, nothing reserved).
    refund_status: str = "succeeded"
    #: Paths whose requests take effect but whose answers never reach the shop (timeouts).
    answers_lost: set[str] = field(default_factory=set)
    #: Paths the shop cannot reach (each call fails to connect): a gateway outage.
    unreachable: set[str] = field(default_factory=set)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def settle(self, intent_id: str, status: str = "succeeded") -> None:
        intent = self.intents[intent_id]
        intent.update(status=status, updatedAt=_now())
        if status == "succeeded" and intent["captureMethod"] == "automatic":
            intent["amountReceived"] = intent["amount"]

    def settle_refund(self, refund_id: str, status: str) -> None:
        """The reconciler's verdict on a pending refund; a refused one releases its reservation."""
        refund = next(r for r in self.refunds if r["refundId"] == refund_id)
        refund["status"] = status
        if status == "failed":
            self.intents[refund["paymentIntentId"]]["amountRefunded"] -= refund["amount"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("Bearer pk_test_")
        assert request.headers["x-signature"].startswith("sha256=")
        self.requests.append((request.method, request.url.path, dict(request.headers)))
        if request.url.path in self.unreachable:
            raise httpx.ConnectError("the gateway is unreachable", request=request)
        key = request.headers.get("idempotency-key")
        body = json.loads(request.content) if request.content else {}
        if key and key in self.idempotent:
            answer = httpx.Response(**self.idempotent[key])  # replayed, as the gateway does
        else:
            status, payload = self.route(request, body)
            if key:
                self.idempotent[key] = {"status_code": status, "json": payload}
            answer = httpx.Response(status, json=payload)
        lost_token = request.url.path == "/api/v1/payment/process" and body["paymentDetails"]["token"].startswith(
            "tok_lost")
        if lost_token or request.url.path in self.answers_lost:
            raise httpx.ReadTimeout("the answer was lost", request=request)  # done, but nobody hears of it
        return answer

    def route(self, request: httpx.Request, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = request.url.path
        if path == "/api/v1/payment/intent":
            pid = "pi_" + secrets.token_hex(12)
            intent = {"paymentIntentId": pid, "merchantId": "mer_test", "status": "created",
                      "amount": body["amount"], "currency": body["currency"], "amountRefunded": 0,
                      "productDetails": body["productDetails"], "description": body.get("description"),
                      "metadata": body.get("metadata", {}), "lastError": None, "card": None,
                      "captureMethod": body.get("captureMethod", "automatic"), "amountCapturable": 0,
                      "amountReceived": 0, "cancellationReason": None,
                      "createdAt": _now(), "updatedAt": _now()}
            self.intents[pid] = intent
            return 201, {**intent, "clientSecret": f"{pid}_secret_{secrets.token_hex(8)}"}
        if path == "/api/v1/payment/process":
            intent = self.intents[body["paymentIntentId"]]
            if intent["status"] not in ("created", "failed"):
                return 409, {"error": {"type": "invalid_request_error", "code": "intent_state_conflict",
                                       "message": "busy", "requestId": "req_1"}}
            token = body["paymentDetails"]["token"]
            intent["card"] = {"brand": "visa", "last4": "9995" if "nsf" in token else "4242",
                              "expMonth": 12, "expYear": 2034}
            if token.startswith("tok_nsf"):
                intent.update(status="failed", lastError={"code": "card_declined",
                              "declineCode": "insufficient_funds", "message": "declined"})
            elif token.startswith(("tok_slow", "tok_lost")):
                intent.update(status="in_progress", lastError=None)
            elif intent["captureMethod"] == "manual":
                intent.update(status="requires_capture", lastError=None, amountCapturable=intent["amount"])
            else:
                intent.update(status="succeeded", lastError=None, amountReceived=intent["amount"])
            intent["updatedAt"] = _now()
            return 200, intent
        if path == "/api/v1/payment/capture":
            intent = self.intents[body["paymentIntentId"]]
            if intent["status"] != "requires_capture":
                return 409, {"error": {"type": "invalid_request_error", "code": "intent_state_conflict",
                                       "message": "not capturable", "requestId": "req_1"}}
            amount = body.get("amount", intent["amountCapturable"])
            self.captures.append((intent["paymentIntentId"], amount))
            intent.update(status="succeeded", amountCapturable=0, amountReceived=amount, updatedAt=_now())
            return 200, intent
        if path == "/api/v1/payment/cancel":
            intent = self.intents[body["paymentIntentId"]]
            if intent["status"] not in ("created", "failed", "requires_capture"):
                return 409, {"error": {"type": "invalid_request_error", "code": "intent_state_conflict",
                                       "message": "not cancelable", "requestId": "req_1"}}
            self.voids.append(intent["paymentIntentId"])
            intent.update(status="canceled", amountCapturable=0, cancellationReason="requested", updatedAt=_now())
            return 200, intent
        if path == "/api/v1/payment/status":
            intent = self.intents[request.url.params["paymentIntentId"]]
            return 200, {k: intent[k] for k in ("paymentIntentId", "status", "amount", "currency",
                                                "amountRefunded", "lastError", "updatedAt")}
        if path.startswith("/api/v1/payment/intent/") and path.endswith("/history"):
            intent_id = path.split("/")[-2]
            refunds = [r for r in self.refunds if r["paymentIntentId"] == intent_id]
            events = [{"type": "payment_intent.updated", "objectId": intent_id, "data": self.intents[intent_id]},
                      *({"type": "refund.updated", "objectId": r["refundId"], "data": r} for r in refunds)]
            return 200, {"data": [{**e, "sequence": i + 1, "createdAt": _now()} for i, e in enumerate(events)],
                         "hasMore": False}
        if path.startswith("/api/v1/payment/refund/"):
            refund_id = path.rsplit("/", 1)[1]
            found = [r for r in self.refunds if r["refundId"] == refund_id]
            if found:
                return 200, found[0]
            return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                   "message": "no such refund", "param": "refundId", "requestId": "req_1"}}
        if path.startswith("/api/v1/payment/intent/"):
            return 200, self.intents[path.rsplit("/", 1)[1]]
        if path == "/api/v1/payment/refund":
            intent = self.intents[body["paymentIntentId"]]
            if intent["amountRefunded"] + body.get("amount", 0) > intent["amountReceived"]:
                return 400, {"error": {"type": "invalid_request_error", "code": "amount_too_large",
                                       "message": "more than was received", "requestId": "req_1"}}
            amount = body.get("amount", intent["amountReceived"] - intent["amountRefunded"])
            if self.refund_status != "failed":
                intent["amountRefunded"] += amount
            refund = {"refundId": "re_" + secrets.token_hex(8), "paymentIntentId": intent["paymentIntentId"],
                      "amount": amount, "currency": intent["currency"], "status": self.refund_status,
                      "reason": body.get("reason")}
            self.refunds.append(refund)
            return 200, refund
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "message": "no route", "requestId": "req_1"}}


@dataclass
class ShopHarness:
    http: httpx.AsyncClient
    gateway: FakeGateway
    config: StorefrontConfig
    app: Any = None

    def client(self, *, peer: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
        """Another client of the same shop, from address ``peer``, sending only ``headers``
        (no Origin unless given): a cross-site page, a script, another admin's machine."""
        transport = httpx.ASGITransport(app=self.app, client=(peer, 40000))
        return httpx.AsyncClient(transport=transport, base_url=SHOP, headers=headers)

    async def place_order(self, *skus: str) -> str:
        for sku in skus or ("tw-mug-12",):
            r = await self.http.post("/cart/add", data={"sku": sku})
            assert r.status_code == 303
        r = await self.http.post("/checkout")
        assert r.status_code == 303, r.text
        location = r.headers["location"]
        page = await self.http.get(location)
        assert page.status_code == 200
        return location.rsplit("/", 1)[1]

    async def order(self, order_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/admin/api/orders/{order_id}")
        assert r.status_code == 200, r.text
        return r.json()

    async def login(self) -> None:
        r = await self.http.post("/admin/login", data={"password": ADMIN_PASSWORD})
        assert r.status_code == 303, r.text


@contextlib.asynccontextmanager
async def running_shop(tmp_path: Path, **overrides: Any) -> AsyncIterator[ShopHarness]:
    gateway = FakeGateway()
    settings: dict[str, Any] = {
        "api_key": "pk_test_shop", "signing_secret": "sk_test_shop", "gateway_url": "http://gateway.test",
        "webhook_secret": new_webhook_secret(), "data_dir": tmp_path / "shop",
        "admin_password": ADMIN_PASSWORD, "secret_key": secrets.token_bytes(32), **overrides,
    }
    config = StorefrontConfig(**settings)
    app = create_app(config, transport=gateway.transport())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        # As a browser on the shop's own pages: state-changing POSTs carry the shop's Origin.
        async with httpx.AsyncClient(transport=transport, base_url=SHOP, headers={"origin": SHOP}) as http:
            yield ShopHarness(http, gateway, config, app)


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[ShopHarness]:
    async with running_shop(tmp_path) as harness:
        yield harness
