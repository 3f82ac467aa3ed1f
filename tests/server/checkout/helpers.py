"""Helpers for the checkout and vault tests: encrypted cards, tokens, raw rows."""
from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

import paygate
from paygate_server.cards import card_brand, fingerprint
from paygate_server.cards.resolved import ResolvedCard
from paygate_server.processing.connectors import CardDetails
from paygate_server.storage.schema_checkout import vault_cards
from tests.support.app import InProcessGateway

__all__ = ["VISA", "encrypt", "resolved_card", "tokenize", "vault_row"]

VISA = "4242424242424242"
CVC = "731"


def encrypt(gw: InProcessGateway, number: str = VISA, *, cvc: str = CVC, exp_month: int = 12,
            exp_year: int = 2034, **kw: Any) -> str:
    return paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=number,
                                exp_month=exp_month, exp_year=exp_year, cvc=cvc, **kw)


async def tokenize(gw: InProcessGateway, client_secret: str, number: str = VISA, **kw: Any) -> httpx.Response:
    return await gw.http.post("/checkout/v1/tokens", json={
        "clientSecret": client_secret, "encryptedCard": encrypt(gw, number, **kw)})


def resolved_card(gw: InProcessGateway, number: str = VISA, cvc: str = CVC) -> ResolvedCard:
    return ResolvedCard(
        details=CardDetails(number, 12, 2034, cvc),
        summary={"brand": card_brand(number), "last4": number[-4:], "expMonth": 12, "expYear": 2034},
        fingerprint=fingerprint(number, gw.gateway.fingerprint_key),
    )


async def vault_row(gw: InProcessGateway, **where: Any) -> Any:
    async with gw.gateway.db.read() as conn:
        query = select(vault_cards)
        for name, value in where.items():
            query = query.where(vault_cards.c[name] == value)
        return (await conn.execute(query)).first()
