"""A processor's own words never carry a card number into the gateway (SPEC §5: no card
number in any log, error, event or archive).

What a processor says about an operation it did not settle (a "retry later" that outlived
the attempt, a refused capture, a refund it could not do yet) is kept: on the attempt
(``transactions.error_message``, captured by the change history and shipped to the
archive, shown by the console) and on the reconciler's check (``last_result``, listed by
``paygate reconcile`` and the console). A processor that quotes the card back — a
validation message, a debug echo — must not put it there. Here the processor speaks the
simulator's protocol (a ``simulator`` account may point at any processor that does)."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import orjson
import pytest

import paygate
from paygate_server.processors.accounts import add_account
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually
from tests.support.http_stub import Action, Reply, Seen, StubServer
from tests.support.secret_scan import places_holding

PAN = "4000056655665556"
QUOTED = ("4000056655665556", "4000 0566 5566 5556", "4000-0566-5566-5556")


def _quoting(quoted: str) -> Callable[[Seen], Action]:
    def answer(seen: Seen) -> Action:
        body = orjson.loads(seen.body)
        if seen.target == "/v1/charges" and body.get("capture") is False:  # the authorization: approved
            return Reply(200, orjson.dumps({"reference": body["reference"], "status": "approved", "authCode": "A1"}))
        if seen.target in ("/v1/charges", "/v1/refunds"):  # nothing done, try again later (for ever)
            return Reply(503, orjson.dumps({"status": "error", "code": "busy", "retryable": True,
                                            "message": f"card {quoted} is busy"}))
        if seen.target == "/v1/captures":
            return Reply(200, orjson.dumps({"reference": body["reference"], "status": "refused",
                                            "declineCode": "issuer_unavailable",
                                            "message": f"capture of card {quoted} refused"}))
        return Reply(404, orjson.dumps({"status": "error", "code": "not_found", "retryable": False}))
    return answer


@pytest.mark.parametrize("quoted", QUOTED)
async def test_a_processor_quoting_the_card_leaves_no_card_number_anywhere(
        gw: InProcessGateway, database_url: str, tmp_path: Path, quoted: str) -> None:
    async with StubServer(_quoting(quoted)) as stub:
        shop = await gw.new_merchant()
        await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                          kind="simulator", name="quoting", settings={"url": stub.url}, credentials={})

        async def pay(**intent: str) -> str:
            pid: str = (await shop.create_intent(**intent))["paymentIntentId"]
            jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=PAN, exp_month=12, exp_year=2034,
                                       cvc="123")
            r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                            "paymentDetails": {"encryptedCard": jwe}})
            assert r.status_code == 200, r.text
            return pid

        await pay()  # the charge: "retry later" until the attempt is unknown
        held = await pay(captureMethod="manual")
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": held})  # refused
        assert r.status_code == 200 and r.json()["status"] == "requires_capture", r.text
        assert len(stub.seen) >= 3
    assert await places_holding(QUOTED, data_dir=tmp_path, database_url=database_url) == []


CVC = "862"


def _quoting_the_security_code(seen: Seen) -> Action:
    body = orjson.loads(seen.body)
    assert body["card"]["cvc"] == CVC  # the code the processor was sent, and quotes back
    return Reply(503, orjson.dumps({"status": "error", "code": "busy", "retryable": True,
                                    "message": f"security code {CVC} ok; card busy ({CVC}), try again"}))


async def test_a_processor_quoting_the_security_code_leaves_it_nowhere(
        gw: InProcessGateway, database_url: str, tmp_path: Path) -> None:
    """The code is masked where the charge is sent (the only place that knows it); the
    rest of the processor's words are kept, so the operator still reads why."""
    async with StubServer(_quoting_the_security_code) as stub:
        shop = await gw.new_merchant()
        await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                          kind="simulator", name="quoting", settings={"url": stub.url}, credentials={})
        pid = (await shop.create_intent())["paymentIntentId"]
        jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=PAN, exp_month=12, exp_year=2034, cvc=CVC)
        r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                        "paymentDetails": {"encryptedCard": jwe}})
        assert r.status_code == 200, r.text
        # "Retry later" until the attempt's deadline: then it is unknown, with the words kept.
        await eventually(partial(places_holding, ("security code [removed] ok; card busy ([removed])",),
                                 data_dir=tmp_path, database_url=database_url),
                         until=lambda places: "transactions.error_message" in places, timeout=30,
                         what="the attempt settled unknown with the processor's words, masked")
    assert await places_holding((f"code {CVC}", f"({CVC})"), data_dir=tmp_path, database_url=database_url) == []
