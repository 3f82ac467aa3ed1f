"""Adyen's Checkout API (v71) and its notifications, as the published API reference and
webhook examples describe them, served over loopback for gateway tests — there is no Adyen
sandbox here. A payment's answer is decided by its card (the simulator's test cards:
approved, refused with a reason, or approved with the answer lost); captures, cancels and
refunds are "received" and their outcome is queued as a notification item, signed with
the official ``Adyen`` library, for the test to deliver to the gateway when it chooses
(late, twice, out of order). Like Adyen, it keeps every ``Idempotency-Key`` for the whole
company account, every endpoint together (docs.adyen.com/development-resources/api-idempotency):
a request under a key seen before is answered the first request's answer and does nothing,
whatever its endpoint.

    fake = FakeAdyen("ShopECOM", hmac_key)
    async with StubServer(fake.handler) as stub: ... apiBase = stub.url ...
    await fake.deliver(http, "/processors/v1/pa_…/webhooks")
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
from Adyen import util as adyen_util

from paygate_server import jsoncodec
from tests.support.http_stub import CLOSE, HANG, Action, Reply, Seen

__all__ = ["LOST", "PARTIAL", "FakeAdyen"]

# card → (resultCode, refusalReason, refusalReasonCode); docs.adyen.com/development-resources/refusal-reasons
_REFUSED = {
    "4000000000000002": ("Refused", "Refused", "2"),
    "4000000000009995": ("Refused", "Not enough balance", "12"),
    "4000000000000069": ("Refused", "Expired Card", "6"),
    "4000000000000127": ("Refused", "CVC Declined", "24"),
}
LOST = "4000000000001026"  # authorised and notified, but the answer never arrives
PARTIAL = "4000000000001083"  # authorised for half the amount: PartiallyAuthorised (never asked for)


@dataclass
class Payment:
    psp: str
    reference: str
    amount: int
    currency: str
    state: str  # authorised | captured | cancelled | refused


@dataclass
class FakeAdyen:
    merchant_account: str
    hmac_key: str
    payments: dict[str, Payment] = field(default_factory=dict)  # pspReference -> payment
    queued: list[dict[str, Any]] = field(default_factory=list)  # notification items not delivered yet
    delivered: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, Reply] = field(default_factory=dict)  # Idempotency-Key -> the first answer
    # Paths (e.g. "/v71/cancels") whose next request never reaches Adyen: never answered, nothing done.
    unreached: set[str] = field(default_factory=set)
    targets: list[str] = field(default_factory=list)  # every request's target, in order
    _psp: itertools.count = field(default_factory=lambda: itertools.count(8815_0000_0000_0001))

    def _new_psp(self) -> str:
        return str(next(self._psp))

    def _notify(self, event: str, psp: str, original: str, reference: str, amount: int, currency: str,
                success: bool, reason: str = "") -> None:
        item = {"pspReference": psp, "originalReference": original, "merchantAccountCode": self.merchant_account,
                "merchantReference": reference, "amount": {"value": amount, "currency": currency},
                "eventCode": event, "success": "true" if success else "false", "reason": reason,
                "eventDate": "2026-12-03T10:00:00+01:00", "additionalData": {}}
        signed = adyen_util.generate_notification_sig(copy.deepcopy(item), self.hmac_key)
        item["additionalData"]["hmacSignature"] = signed.decode()
        self.queued.append(item)

    def charges(self, reference: str) -> list[Payment]:
        return [p for p in self.payments.values() if p.reference == reference]

    def handler(self, seen: Seen) -> Action:
        if seen.headers.get("x-api-key") != "test-api-key" or not seen.target.startswith("/v71/"):
            return Reply(401, jsoncodec.dumps({"status": 401, "errorCode": "000", "message": "HTTP Status Response - Unauthorized", "errorType": "security"}))
        self.targets.append(seen.target)
        if seen.target in self.unreached:
            self.unreached.discard(seen.target)
            return HANG
        key = seen.headers.get("idempotency-key")
        if key is not None and key in self.answers:
            return self.answers[key]  # done once: the first answer again, nothing done
        answer, lost = self._handle(seen)
        if key is not None:
            self.answers[key] = answer
        return CLOSE if lost else answer

    def _handle(self, seen: Seen) -> tuple[Reply, bool]:
        """The request's answer, and whether it is lost on its way back."""
        body = jsoncodec.loads(seen.body)
        path = seen.target[len("/v71"):]
        amount = body.get("amount") or {}
        if path == "/payments":
            return self._payment(body, amount)
        if path == "/cancels":  # by the payment's own reference
            payment = next((p for p in self.payments.values() if p.reference == body["paymentReference"]), None)
            psp = self._new_psp()
            ok = payment is not None and payment.state == "authorised"
            if ok:
                assert payment is not None
                payment.state = "cancelled"
            self._notify("TECHNICAL_CANCEL", psp, payment.psp if payment else "", body["reference"], 0, "EUR", ok)
            return Reply(201, jsoncodec.dumps({"merchantAccount": self.merchant_account, "paymentReference":
                                               body["paymentReference"], "reference": body["reference"],
                                               "pspReference": psp, "status": "received"})), False
        _, original, action = path.split("/")[1:4]
        payment = self.payments[original]
        psp = self._new_psp()
        event, ok = {"captures": ("CAPTURE", payment.state == "authorised"),
                     "cancels": ("CANCELLATION", payment.state == "authorised"),
                     "refunds": ("REFUND", payment.state == "captured")}[action]
        if ok and action != "refunds":
            payment.state = "captured" if action == "captures" else "cancelled"
        self._notify(event, psp, original, body["reference"], amount.get("value", payment.amount),
                     amount.get("currency", payment.currency), ok)
        return Reply(201, jsoncodec.dumps({"merchantAccount": self.merchant_account, "paymentPspReference": original,
                                           "reference": body["reference"], "pspReference": psp,
                                           "status": "received", **({"amount": amount} if amount else {})})), False

    def _payment(self, body: dict[str, Any], amount: dict[str, Any]) -> tuple[Reply, bool]:
        card = body["paymentMethod"]["number"]
        psp = self._new_psp()
        manual = (body.get("additionalData") or {}).get("manualCapture") == "true"
        refused = _REFUSED.get(card)
        state = "refused" if refused else ("authorised" if manual else "captured")
        if card == PARTIAL:  # the issuer holds what the card has: half
            amount = {**amount, "value": amount["value"] // 2}
        self.payments[psp] = Payment(psp, body["reference"], amount["value"], amount["currency"], state)
        self._notify("AUTHORISATION", psp, "", body["reference"], amount["value"], amount["currency"],
                     refused is None, "" if refused is None else refused[1])
        answer: dict[str, Any] = {"pspReference": psp, "merchantReference": body["reference"],
                                  "amount": amount}
        if card == PARTIAL:
            answer.update(resultCode="PartiallyAuthorised", additionalData={"authCode": "064214"})
        elif refused is None:
            answer.update(resultCode="Authorised", additionalData={"authCode": "064213"})
        else:
            answer.update(resultCode=refused[0], refusalReason=refused[1], refusalReasonCode=refused[2])
        return Reply(200, jsoncodec.dumps(answer)), card == LOST

    async def deliver(self, http: httpx.AsyncClient, path: str, *, key: str | None = None) -> httpx.Response:
        """POST every queued item as one batch (``key``: sign with another HMAC key)."""
        items = self.queued
        if key is not None:
            items = [dict(i, additionalData={"hmacSignature": adyen_util.generate_notification_sig(
                {k: v for k, v in i.items() if k != "additionalData"} | {"additionalData": {}}, key).decode()})
                for i in items]
        body = {"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}
        r = await http.post(path, json=body)
        if key is None and r.status_code == 200:
            self.delivered.extend(self.queued)
            self.queued = []
        return r
