"""The CVC's end (SPEC §5: kept only until the authorization): whoever records a token-paid
attempt's outcome — the request, or the reconciler when the request's answer was lost —
drops the vaulted CVC in the same transaction. Against a real simulator, on both
databases (PostgreSQL's request path settles with its one-statement form)."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from paygate_server.processing.reconciler import Reconciler
from paygate_server.simulator.testing import TestCards
from paygate_server.storage.schema import reconcile_queue
from tests.server.checkout.helpers import tokenize, vault_row
from tests.support.app import InProcessGateway
from tests.support.signing import SignedClient


async def _status(shop: SignedClient, intent_id: str) -> dict[str, Any]:
    return (await shop.get(f"/api/v1/payment/status?paymentIntentId={intent_id}")).json()


async def _pay(gw: InProcessGateway, number: str) -> tuple[SignedClient, str, dict[str, Any]]:
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    pid = intent["paymentIntentId"]
    token = (await tokenize(gw, intent["clientSecret"], number)).json()["token"]
    assert (await vault_row(gw, intent_id=pid)).cvc_sealed is not None
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"token": token}})
    assert r.status_code == 200, r.text
    return shop, pid, r.json()


@pytest.mark.parametrize(("number", "status"), [(TestCards.VISA, "succeeded"),
                                                (TestCards.GENERIC_DECLINE, "failed")])
async def test_the_request_that_learns_the_outcome_drops_the_cvc(pgw: InProcessGateway, number: str,
                                                                 status: str) -> None:
    _, pid, answer = await _pay(pgw, number)
    assert answer["status"] == status
    row = await vault_row(pgw, intent_id=pid)  # no waiting: it went with the outcome
    assert row.cvc_sealed is None and row.pan_sealed is not None


async def test_the_reconciler_that_learns_the_outcome_drops_the_cvc(pgw: InProcessGateway) -> None:
    shop, pid, answer = await _pay(pgw, TestCards.DROPPED_ANSWER)  # approved, answer lost
    assert answer["status"] == "in_progress"
    assert (await vault_row(pgw, intent_id=pid)).cvc_sealed is not None  # the outcome is not known yet
    async with pgw.gateway.db.write() as conn:  # due now, not after the first back-off step
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))
    processing = pgw.gateway.processing
    await Reconciler(pgw.gateway.payments, processing.connector, pgw.gateway.settings).run_once()
    assert (await _status(shop, pid))["status"] == "succeeded"
    row = await vault_row(pgw, intent_id=pid)
    assert row.cvc_sealed is None and row.pan_sealed is not None
