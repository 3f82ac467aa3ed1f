"""An Adyen account in an in-process gateway, for tests of payments through it: a merchant,
its account at :class:`~tests.support.fake_adyen.FakeAdyen` over loopback, and the
delivery of what Adyen queued (notifications signed with the official ``Adyen`` library)."""
from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from Adyen import util as adyen_util
from sqlalchemy import select

import paygate
from paygate_server.processors.accounts import add_account
from paygate_server.storage.schema import transactions
from tests.support.app import InProcessGateway
from tests.support.fake_adyen import FakeAdyen
from tests.support.http_stub import StubServer
from tests.support.signing import SignedClient

__all__ = ["APPROVE", "HMAC_KEY", "Shop", "adyen_shop", "resigned"]

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
APPROVE = "4242424242424242"


@dataclass
class Shop:
    gw: InProcessGateway
    client: SignedClient
    fake: FakeAdyen
    hook: str
    adyen: StubServer | None = None  # where the fake is served (to stop it listening)

    async def pay(self, amount: int, currency: str, number: str = APPROVE, **intent: Any) -> dict[str, Any]:
        pid = (await self.client.create_intent(amount=amount, currency=currency, **intent))["paymentIntentId"]
        jwe = paygate.encrypt_card(self.gw.gateway.card_keys.jwks(), number=number, exp_month=12, exp_year=2034,
                                   cvc="123")
        answer = await self.client.post("/api/v1/payment/process", {
            "paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def intent(self, pid: str) -> dict[str, Any]:
        return dict((await self.client.get(f"/api/v1/payment/intent/{pid}")).json())

    async def attempt(self, pid: str, kind: str) -> Any:
        async with self.gw.gateway.db.read() as conn:
            return (await conn.execute(select(transactions).where(transactions.c.intent_id == pid,
                                                                  transactions.c.kind == kind))).one()

    async def deliver(self, *, changed: dict[str, Any] | None = None) -> None:
        """Deliver what Adyen queued; ``changed``: with these fields changed and signed again."""
        if changed is not None:
            self.fake.queued = [resigned({**item, **changed}) for item in self.fake.queued]
        answer = await self.fake.deliver(self.gw.http, self.hook)
        assert (answer.status_code, answer.text) == (200, "[accepted]")


def resigned(item: dict[str, Any]) -> dict[str, Any]:
    unsigned = {**copy.deepcopy(item), "additionalData": {}}
    return {**unsigned, "additionalData": {
        "hmacSignature": adyen_util.generate_notification_sig(copy.deepcopy(unsigned), HMAC_KEY).decode()}}


@contextlib.asynccontextmanager
async def adyen_shop(gw: InProcessGateway) -> AsyncIterator[Shop]:
    """A merchant with an Adyen account at a fake Adyen served over loopback."""
    fake = FakeAdyen("ShopECOM", HMAC_KEY)
    async with StubServer(fake.handler) as adyen:
        client = await gw.new_merchant()
        account = await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=client.creds.merchant_id,
                                    kind="adyen", name="Adyen", settings={"apiBase": adyen.url,
                                                                          "merchantAccount": "ShopECOM"},
                                    credentials={"apiKey": "test-api-key", "hmacKey": HMAC_KEY})
        yield Shop(gw, client, fake, f"/processors/v1/{account.id}/webhooks", adyen)
