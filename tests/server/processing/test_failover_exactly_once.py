"""Failover never sends a charge that may have been made (SPEC §7): only an account that
said, or provably heard, nothing hands the payment to the next one.

The case: the charge goes out on a kept-alive connection, the processor takes it and goes
away before answering (the connection ends without a byte of the answer, and nothing
listens any more). The connector's pool writes a request that met a closed kept-alive
connection once more on a new connection (safe: the same reference); that new connection
is refused. The first write may have charged the card, so the attempt is ``unknown`` for
the reconciler at the same account, and the next account hears nothing of it."""
from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

import paygate
from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.storage.schema import transactions
from tests.support.app import InProcessGateway
from tests.support.http_stub import CLOSE, Action, Reply, Seen, StubServer


def _approve(seen: Seen) -> Reply:
    reference = orjson.loads(seen.body)["reference"]
    return Reply(200, orjson.dumps({"reference": reference, "status": "approved", "authCode": "A1B2C3",
                                    "declineCode": None}))


async def test_a_charge_lost_with_its_processor_is_unknown_and_never_sent_to_the_next_account(
        gw: InProcessGateway) -> None:
    first: StubServer
    charges = 0

    def dies_with_the_second_charge(seen: Seen) -> Action:
        nonlocal charges
        charges += 1
        if charges == 2:
            first.stop_listening()
            return CLOSE  # the charge was taken; no answer ever comes
        return _approve(seen)

    async with StubServer(dies_with_the_second_charge) as first, StubServer(_approve) as second:
        shop = await gw.new_merchant()
        accounts = [await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                                      kind="simulator", name=name, settings={"url": stub.url}, credentials={})
                    for name, stub in (("first", first), ("second", second))]
        await set_routing(gw.gateway.db, merchant_id=shop.creds.merchant_id,
                          document=[{"use": [account.id for account in accounts]}])

        async def pay() -> tuple[str, dict[str, Any]]:
            pid = (await shop.create_intent())["paymentIntentId"]
            jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242", exp_month=12,
                                       exp_year=2034, cvc="123")
            r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                            "paymentDetails": {"encryptedCard": jwe}})
            assert r.status_code == 200, r.text
            return pid, r.json()

        assert (await pay())[1]["status"] == "succeeded"  # the first account's connection is kept alive
        pid, answer = await pay()

    assert answer["status"] == "in_progress"
    assert second.seen == []  # never sent to another processor
    async with gw.gateway.db.read() as conn:
        attempts = (await conn.execute(select(transactions.c.status, transactions.c.connector)
                                       .where(transactions.c.intent_id == pid))).all()
    assert [tuple(a) for a in attempts] == [("unknown", accounts[0].id)]
