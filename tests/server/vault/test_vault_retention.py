"""How long the vault keeps a card (storage/vault.py ``purge_expired``): a charged card's
encrypted number goes once its token has expired and its intent has no operation pending
or unknown; until then only its CVC goes. The tokenization counts of final intents go with
them; a failed intent's count stays (its clientSecret can still tokenize)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from paygate_server.clock import now_us
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
from paygate_server.processing.service import charge_outcome
from paygate_server.storage.checkout import tokenizations
from paygate_server.storage.port import Attempt, NewAttempt
from paygate_server.storage.schema_checkout import checkout_limits, vault_cards
from paygate_server.storage.vault import VaultPurge, purge_expired
from tests.server.checkout.helpers import resolved_card, vault_row
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for

_HOUR_US = 3600 * 1_000_000


@pytest.fixture
async def gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """An empty database: the purge runs over every row, so counts are exact."""
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


async def _charged(gw: InProcessGateway, shop: Any) -> tuple[str, str, Attempt]:
    """A checkout payment's vault row (counted, as the checkout does) and its pending attempt."""
    intent = await shop.create_intent()
    mid, pid = shop.creds.merchant_id, intent["paymentIntentId"]
    vault = gw.gateway.vault
    stored = await vault.store_counted(resolved_card(gw), merchant_id=mid, intent_id=pid, limit=20)
    assert stored is not None
    card = await vault.resolve_token(stored.token, merchant_id=mid, intent_id=pid)
    new = NewAttempt(mid, pid, card.summary, card.fingerprint, card.vault_id, "simulator", 60_000_000, 10)
    begun = await gw.gateway.payments.begin_attempt(new, None)  # consumes the token
    assert isinstance(begun, tuple)
    return pid, stored.vault_id, begun[1]


async def _settle(gw: InProcessGateway, attempt: Attempt, outcome: ChargeOutcome) -> None:
    result = ChargeResult(attempt.reference, outcome, auth_code="A1", decline_code="generic_decline")
    settled, _ = await gw.gateway.payments.settle_attempt(attempt, charge_outcome(result, schedule=(1.0,)))
    assert settled is not None


async def test_a_charged_card_goes_once_nothing_in_flight_can_need_it(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    paid, paid_vault, paid_attempt = await _charged(gw, shop)
    declined, declined_vault, declined_attempt = await _charged(gw, shop)
    unknown = ChargeResult(paid_attempt.reference, ChargeOutcome.UNKNOWN)
    await gw.gateway.payments.settle_attempt(paid_attempt, charge_outcome(unknown, schedule=(1.0,)))
    await _settle(gw, declined_attempt, ChargeOutcome.DECLINED)  # the intent is failed: payable again
    db = gw.gateway.db
    assert await purge_expired(db, now_us()) == VaultPurge()  # no token has expired yet

    later = now_us() + _HOUR_US  # both tokens long expired
    done = await purge_expired(db, later)
    assert done.cards_deleted == 1 and done.cvcs_dropped == 1 and done.limits_deleted == 0
    assert await vault_row(gw, id=declined_vault) is None  # settled: the encrypted number is gone
    kept = await vault_row(gw, id=paid_vault)  # its attempt is unknown: kept, but not its CVC
    assert kept is not None and kept.pan_sealed and kept.cvc_sealed is None
    assert await tokenizations(db, declined) == 1  # a failed intent may still tokenize: its count stays
    assert await tokenizations(db, paid) == 1

    await _settle(gw, paid_attempt, ChargeOutcome.APPROVED)
    done = await purge_expired(db, later)
    assert (done.cards_deleted, done.limits_deleted) == (1, 1)
    assert await vault_row(gw, id=paid_vault) is None
    assert await tokenizations(db, paid) == 0  # succeeded: its clientSecret can never tokenize again
    assert await tokenizations(db, declined) == 1


async def test_the_purge_works_in_batches_until_done(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    for _ in range(5):
        _, _, attempt = await _charged(gw, shop)
        await _settle(gw, attempt, ChargeOutcome.APPROVED)
    db = gw.gateway.db
    done = await purge_expired(db, now_us() + _HOUR_US, batch=2)
    assert (done.cards_deleted, done.limits_deleted) == (5, 5)
    async with db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(vault_cards)) == 0
        assert await conn.scalar(select(func.count()).select_from(checkout_limits)) == 0
