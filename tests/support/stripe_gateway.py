"""A merchant with a Stripe processor account at localstripe, and card payments through
the gateway's ``/api/v1/payment/process``: what the Stripe connector's gateway tests share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import select

import paygate
from paygate_server.processors.accounts import add_account
from paygate_server.storage.schema import transactions
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually
from tests.support.http_stub import Reply, Seen, StubServer
from tests.support.localstripe import SECRET_KEY
from tests.support.signing import SignedClient
from tests.support.tcp_proxy import DroppingProxy

__all__ = ["LostConfirm", "attempt_of", "pay_by_card", "pay_with_confirm_lost", "stripe_shop"]


async def stripe_shop(gw: InProcessGateway, api_base: str, webhook_secret: str) -> tuple[SignedClient, str]:
    """A new merchant and the id of its Stripe account at ``api_base``."""
    shop = await gw.new_merchant()
    account = await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                                kind="stripe", name="Stripe", settings={"apiBase": api_base},
                                credentials={"secretKey": SECRET_KEY, "webhookSecret": webhook_secret})
    return shop, account.id


async def pay_by_card(gw: InProcessGateway, shop: SignedClient, number: str, amount: int, currency: str,
                      *, by_token: bool = False, **intent: Any) -> tuple[str, dict[str, Any]]:
    """A new intent paid with ``number``: its id and the process call's answer. ``by_token``:
    as the checkout pays, with a token of the card vaulted by ``/checkout/v1/tokens``
    (its CVC kept until the outcome), else with ``encryptedCard`` (decrypted in memory only)."""
    created = await shop.create_intent(amount=amount, currency=currency, **intent)
    pid = created["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=number, exp_month=12, exp_year=2034, cvc="123")
    details = {"encryptedCard": jwe}
    if by_token:
        tokenized = await gw.http.post("/checkout/v1/tokens", json={"clientSecret": created["clientSecret"],
                                                                    "encryptedCard": jwe})
        assert tokenized.status_code == 200, tokenized.text
        details = {"token": tokenized.json()["token"]}
    answer = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                         "paymentDetails": details})
    assert answer.status_code == 200, answer.text
    return pid, answer.json()


async def attempt_of(gw: InProcessGateway, pid: str, kind: str = "charge") -> Any:
    """The intent's one transaction of ``kind``, as stored."""
    async with gw.gateway.db.read() as conn:
        return (await conn.execute(select(transactions).where(transactions.c.intent_id == pid,
                                                              transactions.c.kind == kind))).one()


@dataclass(frozen=True)
class LostConfirm:
    shop: SignedClient
    account: str  # the shop's Stripe account
    pid: str  # the intent, left in_progress
    event: Seen  # localstripe's own signed payment_intent.succeeded for it, as it was sent


async def pay_with_confirm_lost(gw: InProcessGateway, localstripe_url: str, hook: str, webhook_secret: str,
                                number: str, amount: int, currency: str, *, by_token: bool = False) -> LostConfirm:
    """A card payment whose confirm localstripe carries out but whose answer is lost on the
    way back, and the event localstripe sends about it (caught at a relay of the test's
    registered as ``hook``, not delivered to the gateway)."""
    host, port = localstripe_url.removeprefix("http://").split(":")
    proxy = DroppingProxy(host, int(port), lambda data: b"/confirm HTTP/1.1" in data)
    async with StubServer(lambda seen: Reply(200, b"")) as relay:
        registered = httpx.post(f"{localstripe_url}/_config/webhooks/{hook}", data={
            "url": relay.url + "/relay", "secret": webhook_secret, "events[]": ["payment_intent.succeeded"]})
        assert registered.status_code == 200
        try:
            shop, account = await stripe_shop(gw, await proxy.start(), webhook_secret)
            pid, paid = await pay_by_card(gw, shop, number, amount, currency, by_token=by_token)
        finally:
            await proxy.close()
        assert paid["status"] == "in_progress"
        pi_id = (await attempt_of(gw, pid)).processor_id

        def delivered() -> Seen | None:
            return next((seen for seen in relay.seen if orjson.loads(seen.body)["data"]["object"]["id"] == pi_id), None)

        event = await eventually(delivered, what=f"localstripe's payment_intent.succeeded for {pi_id}")
        assert event is not None
    return LostConfirm(shop, account, pid, event)
