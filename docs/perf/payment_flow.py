"""What the counting scripts in this folder share: a connector that approves at once, and
one complete payment through the in-process gateway (tests/support/app.py).

Imported by its bare name: each script runs as ``python docs/perf/NAME.py``, which puts this
folder first on ``sys.path``, whichever tree's ``PYTHONPATH`` it measures.
"""
from __future__ import annotations

from typing import Any

from paygate_server.processing.connectors import ChargeOutcome, ChargeResult

__all__ = ["Approve", "pay"]


class Approve:
    name = "simulator"

    async def charge(self, request: Any) -> ChargeResult:
        return ChargeResult(request.reference, ChargeOutcome.APPROVED, auth_code="A1")

    async def aclose(self) -> None:
        pass


async def pay(gw: Any, shop: Any, jwe: str, key: str, *, tokenize: bool) -> None:
    """create → (tokenize →) process with an Idempotency-Key → one status read, as SPEC §10
    (``tokenize``) or as ``paygate bench --encrypted-card``; asserts that it succeeded."""
    created = await shop.create_intent()
    pid = created["paymentIntentId"]
    card: dict[str, str] = {"encryptedCard": jwe}
    if tokenize:
        r = await gw.http.post("/checkout/v1/tokens",
                               json={"clientSecret": created["clientSecret"], "encryptedCard": jwe})
        assert r.status_code == 200, r.text
        card = {"token": r.json()["token"]}
    body = {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": card}
    r = await shop.post("/api/v1/payment/process", body, idempotency_key=key)
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    r = await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")
    assert r.status_code == 200
