"""``GET /api/v1/payment/refund/{refundId}`` (beyond SPEC §4's table, docs/api.md): a refund
answered ``unknown`` is read again by its id until it settles, over the signed API and
through the SDK (``client.refunds.get``), on SQLite and PostgreSQL; another merchant's
refund, an unknown id and a malformed one are ``404 resource_missing``, a card number in its
place ``400 plaintext_card_data``."""
from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import paygate
from paygate_server.processing.connectors import ChargeOutcome, RefundResult
from paygate_server.processing.settle import refund_outcome
from tests.server.processing.scripted import ScriptedProcessor, process_body, scripted
from tests.support.app import InProcessGateway
from tests.support.signing import SignedClient


@pytest.fixture
def processor(gw: InProcessGateway) -> ScriptedProcessor:
    return scripted(gw, ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED, refund_answer=ChargeOutcome.UNKNOWN))


@pytest.fixture
async def sdk(gw: InProcessGateway) -> AsyncIterator[tuple[SignedClient, paygate.AsyncClient]]:
    shop = await gw.new_merchant()
    async with paygate.AsyncClient(shop.creds.api_key, shop.creds.signing_secret, "http://gateway.test",
                                   transport=httpx.ASGITransport(app=gw.asgi)) as client:
        yield shop, client


async def _refunded(gw: InProcessGateway, shop: SignedClient) -> dict[str, object]:
    pid = (await shop.create_intent(amount=5000))["paymentIntentId"]
    r = await shop.post("/api/v1/payment/process", process_body(gw, pid))
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 700, "reason": "damaged"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_an_unknown_refund_is_read_by_its_id_until_it_settles(
        gw: InProcessGateway, processor: ScriptedProcessor,
        sdk: tuple[SignedClient, paygate.AsyncClient]) -> None:
    shop, client = sdk
    answered = await _refunded(gw, shop)
    assert answered["status"] == "unknown"
    refund_id = str(answered["refundId"])
    r = await shop.get(f"/api/v1/payment/refund/{refund_id}")
    assert r.status_code == 200, r.text
    assert r.json() == answered  # the same shape as the refund's own answer

    row = await gw.gateway.payments.get_refund(refund_id)  # the reconciler learns it went through
    assert row is not None
    await gw.gateway.payments.settle_refund(refund_id, refund_outcome(
        RefundResult(row["reference"], ChargeOutcome.APPROVED, None), schedule=(1.0,)))
    settled = await client.refunds.get(refund_id)
    assert (settled.id, settled.status, settled.amount, settled.reason, settled.raw["currency"]) == \
        (refund_id, "succeeded", 700, "damaged", "USD")
    assert (await shop.get(f"/api/v1/payment/refund/{refund_id}")).json()["status"] == "succeeded"


async def test_a_refund_is_its_merchants_only_and_its_id_is_checked(
        gw: InProcessGateway, processor: ScriptedProcessor,
        sdk: tuple[SignedClient, paygate.AsyncClient]) -> None:
    shop, client = sdk
    refund_id = str((await _refunded(gw, shop))["refundId"])
    other = await gw.new_merchant()
    for who, target in ((other, refund_id), (shop, "re_" + "0" * 24), (shop, "pi_notarefund"),
                        (shop, "re_%27%3B--"), (shop, "x" * 300)):
        r = await who.get(f"/api/v1/payment/refund/{target}")
        assert r.status_code == 404, (target, r.text)
        error = r.json()["error"]
        assert (error["code"], error["param"]) == ("resource_missing", "refundId"), error
    r = await shop.get("/api/v1/payment/refund/4242424242424242")
    assert r.status_code == 400 and r.json()["error"]["code"] == "plaintext_card_data", r.text
    with pytest.raises(paygate.InvalidRequestError) as missing:
        await client.refunds.get("re_" + "0" * 24)
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    with pytest.raises(ValueError):
        await client.refunds.get("")
