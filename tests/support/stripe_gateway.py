"""A merchant with a Stripe processor account at localstripe, and card payments through
the gateway's ``/api/v1/payment/process``: what the Stripe connector's gateway tests share."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

import paygate
from paygate_server.processors.accounts import add_account
from paygate_server.storage.schema import transactions
from tests.support.app import InProcessGateway
from tests.support.localstripe import SECRET_KEY
from tests.support.signing import SignedClient

__all__ = ["attempt_of", "pay_by_card", "stripe_shop"]


async def stripe_shop(gw: InProcessGateway, api_base: str, webhook_secret: str) -> tuple[SignedClient, str]:
    """A new merchant and the id of its Stripe account at ``api_base``."""
    shop = await gw.new_merchant()
    account = await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                                kind="stripe", name="Stripe", settings={"apiBase": api_base},
                                credentials={"secretKey": SECRET_KEY, "webhookSecret": webhook_secret})
    return shop, account.id


async def pay_by_card(gw: InProcessGateway, shop: SignedClient, number: str, amount: int, currency: str,
                      **intent: Any) -> tuple[str, dict[str, Any]]:
    """A new intent paid with ``number``: its id and the process call's answer."""
    pid = (await shop.create_intent(amount=amount, currency=currency, **intent))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=number, exp_month=12, exp_year=2034, cvc="123")
    answer = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                         "paymentDetails": {"encryptedCard": jwe}})
    assert answer.status_code == 200, answer.text
    return pid, answer.json()


async def attempt_of(gw: InProcessGateway, pid: str, kind: str = "charge") -> Any:
    """The intent's one transaction of ``kind``, as stored."""
    async with gw.gateway.db.read() as conn:
        return (await conn.execute(select(transactions).where(transactions.c.intent_id == pid,
                                                              transactions.c.kind == kind))).one()
