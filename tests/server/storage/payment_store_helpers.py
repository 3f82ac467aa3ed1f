"""What the store's contract tests share: a merchant of the gateway under test (:class:`Shop`)
and the commands and outcomes they hand the store."""
from __future__ import annotations

import dataclasses
from typing import Any

from paygate_server import jsoncodec
from paygate_server.http.api import IdempotencyScope
from paygate_server.intents.schemas import CreateIntent, render_intent
from paygate_server.intents.service import new_intent
from paygate_server.refunds.schemas import render_refund
from paygate_server.storage.port import (
    Attempt,
    ExistingKey,
    NewAttempt,
    NewRefund,
    Outcome,
    PaymentStore,
    Row,
)
from paygate_server.storage.statements import Sql, fetch_all
from tests.server.checkout.helpers import resolved_card
from tests.support.app import InProcessGateway

CARD = {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
MINUTE_US = 60_000_000
APPROVED = Outcome("succeeded", auth_code="A1B2C3")
DECLINED = Outcome("failed", decline_code="insufficient_funds", error_code="card_declined",
                   error_message="The card has insufficient funds.",
                   intent_error=jsoncodec.dumps({"code": "card_declined", "declineCode": "insufficient_funds",
                                                 "message": "The card has insufficient funds."}).decode())
REFUNDED = Outcome("succeeded")
REFUSED = Outcome("failed", error_code="refund_refused")

_ATTEMPTS = Sql("SELECT * FROM transactions WHERE intent_id = :intent_id ORDER BY created_at")
_CHECKS = Sql("SELECT * FROM reconcile_queue WHERE intent_id = :intent_id ORDER BY created_at")


def unknown(due_at: int, checks: int) -> Outcome:
    return Outcome("unknown", error_message="processor timeout", last_result="timeout", due_at=due_at, checks=checks)


def render(row: Row) -> bytes:
    return jsoncodec.dumps(render_intent(row))


def render_refund_answer(row: Row) -> bytes:
    return jsoncodec.dumps(render_refund(row))


@dataclasses.dataclass
class Shop:
    """One merchant of the gateway under test, with what the tests make for it."""

    gw: InProcessGateway
    merchant_id: str

    @property
    def store(self) -> PaymentStore:
        return self.gw.gateway.payments

    def scope(self, key: str, target: str = "/api/v1/payment/process") -> IdempotencyScope:
        """A request's key as the endpoint makes it (``.claim``; ``.open`` reads what it stores)."""
        return IdempotencyScope(self.gw.gateway, self.merchant_id, key, "POST", target, b"{}")

    async def intent(self, amount: int = 1999, capture_method: str = "automatic") -> dict[str, Any]:
        row, _ = new_intent(self.merchant_id, CreateIntent(amount, "USD", {"name": "Mug"}, None, {}, capture_method))
        assert await self.store.create_intent(row, None, b"{}") is None
        return row

    def new_attempt(self, intent_id: str, vault_id: str | None = None, *, max_failed: int = 10,
                    check_after_us: int = MINUTE_US) -> NewAttempt:
        return NewAttempt(self.merchant_id, intent_id, CARD, "f" * 64, vault_id, "simulator", check_after_us,
                          max_failed)

    async def begin(self, intent_id: str, vault_id: str | None = None, **kw: Any) -> tuple[Row, Attempt]:
        begun = await self.store.begin_attempt(self.new_attempt(intent_id, vault_id), kw.pop("claim", None))
        assert not isinstance(begun, ExistingKey)
        return begun

    async def paid(self) -> Attempt:
        """A succeeded intent of 1999 USD; its charge."""
        _, attempt = await self.begin((await self.intent())["id"])
        row, _ = await self.store.settle_attempt(attempt, APPROVED)
        assert row is not None and row["status"] == "succeeded"
        return attempt

    async def held(self, amount: int = 5000) -> Attempt:
        """A manual-capture intent in requires_capture; its authorization."""
        _, attempt = await self.begin((await self.intent(amount, "manual"))["id"])
        assert attempt.kind == "authorization"
        row, _ = await self.store.settle_attempt(attempt, APPROVED)
        assert row is not None and (row["status"], row["amount_capturable"]) == ("requires_capture", amount)
        return attempt

    async def vaulted(self, intent_id: str) -> str:
        """A checkout token's vault row (with its CVC) for the intent; its id."""
        async with self.gw.gateway.db.write() as conn:
            stored = await self.gw.gateway.vault.store(conn, resolved_card(self.gw), merchant_id=self.merchant_id,
                                                       intent_id=intent_id)
        return stored.vault_id

    async def current(self, intent_id: str) -> Row:
        row = await self.store.get_intent(self.merchant_id, intent_id)
        assert row is not None
        return dict(row)

    async def attempts(self, intent_id: str) -> list[dict[str, Any]]:
        return await rows(self.gw, _ATTEMPTS, intent_id=intent_id)

    async def checks(self, intent_id: str) -> list[dict[str, Any]]:
        return await rows(self.gw, _CHECKS, intent_id=intent_id)

    async def unchanged(self, intent_id: str) -> dict[str, Any]:
        """Everything the store writes for one intent."""
        return {"intent": await self.current(intent_id), "attempts": await self.attempts(intent_id),
                "checks": await self.checks(intent_id)}


async def rows(gw: InProcessGateway, sql: Sql, **params: Any) -> list[dict[str, Any]]:
    async with gw.gateway.db.read() as conn:
        return [dict(r) for r in await fetch_all(conn, sql, **params)]


async def new_shop(gw: InProcessGateway) -> Shop:
    return Shop(gw, (await gw.new_merchant()).creds.merchant_id)


def new_refund(shop: Shop, intent_id: str, amount: int | None) -> NewRefund:
    return NewRefund(shop.merchant_id, intent_id, amount, "requested_by_customer", MINUTE_US)
