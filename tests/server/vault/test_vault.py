"""The card vault in-process: encryption at rest bound to the row, single-use tokens bound
to one intent, the CVC's short life, data-key rotation, fingerprints."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from paygate_server.cards.resolved import ResolvedCard
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
from paygate_server.processing.service import charge_outcome
from paygate_server.storage.checkout import tokenizations
from paygate_server.storage.port import NewAttempt
from paygate_server.storage.schema import sealed_keys
from paygate_server.storage.schema_checkout import vault_cards
from paygate_server.vault.datakeys import DATA_KEY_PURPOSE, rotate_data_key
from paygate_server.vault.service import TOKEN_INVALID_MESSAGE, VaultService, hash_token
from tests.server.checkout.helpers import CVC, VISA, resolved_card, vault_row
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.eventually import eventually

MASTERCARD = "5555555555554444"


async def _intent(gw: InProcessGateway, shop: Any = None) -> tuple[Any, dict[str, Any]]:
    shop = shop or await gw.new_merchant()
    return shop, await shop.create_intent()


async def _store(gw: InProcessGateway, merchant_id: str, intent_id: str, number: str = VISA) -> Any:
    vault: VaultService = gw.gateway.vault
    async with gw.gateway.db.write() as conn:
        return await vault.store(conn, resolved_card(gw, number), merchant_id=merchant_id, intent_id=intent_id)


def _vault(gw: InProcessGateway) -> VaultService:
    return gw.gateway.vault


async def _redeem(gw: InProcessGateway, token: Any, *, merchant_id: str, intent_id: str,
                  vault: VaultService | None = None) -> ResolvedCard:
    """The card behind ``token``, consuming it as a payment attempt does (in its own transaction here)."""
    card = await (vault or _vault(gw)).resolve_token(token, merchant_id=merchant_id, intent_id=intent_id)
    assert card.vault_id is not None
    if not await gw.gateway.payments.redeem_token(card.vault_id):
        raise ApiError("token_invalid", TOKEN_INVALID_MESSAGE, param="paymentDetails.token")
    return card


async def test_card_is_encrypted_at_rest_and_redeemed_once(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    pid, mid = intent["paymentIntentId"], shop.creds.merchant_id
    stored = await _store(gw, mid, pid)
    assert stored.token.startswith("tok_") and len(stored.token) >= 4 + 32
    assert stored.summary == {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
    assert "tok_" not in repr(stored)

    row = await vault_row(gw, id=stored.vault_id)
    assert row.token_hash == hash_token(stored.token)  # the token itself is not stored
    for column in ("pan_sealed", "cvc_sealed"):
        raw = bytes(row._mapping[column])
        assert VISA.encode() not in raw and b"4242 4242" not in raw
    assert row.intent_id == pid and row.merchant_id == mid and row.used_at is None
    assert row.expires_at - row.created_at == 900 * 1_000_000  # 15 minutes (SPEC §5)

    card = await _redeem(gw, stored.token, merchant_id=mid, intent_id=pid)
    assert (card.details.number, card.details.cvc, card.details.exp_month, card.details.exp_year) == (VISA, CVC, 12, 2034)
    assert card.vault_id == stored.vault_id and card.fingerprint == row.fingerprint
    assert VISA not in repr(card) and CVC not in repr(card)

    with pytest.raises(ApiError) as again:
        await _redeem(gw, stored.token, merchant_id=mid, intent_id=pid)
    assert (again.value.status, again.value.code) == (400, "token_invalid")
    assert (await vault_row(gw, id=stored.vault_id)).used_at is not None


async def test_the_checkouts_store_counts_and_stores_both_or_neither(gw: InProcessGateway) -> None:
    # The checkout's store (one statement on PostgreSQL): at the limit, neither the count
    # nor a row; below it, both, and the token resolves to the card.
    shop, intent = await _intent(gw)
    pid, mid = intent["paymentIntentId"], shop.creds.merchant_id
    vault = _vault(gw)
    stored = [await vault.store_counted(resolved_card(gw, number), merchant_id=mid, intent_id=pid, limit=2)
              for number in (VISA, MASTERCARD)]
    assert await vault.store_counted(resolved_card(gw), merchant_id=mid, intent_id=pid, limit=2) is None
    assert await tokenizations(gw.gateway.db, pid) == 2
    async with gw.gateway.db.read() as conn:
        ids = (await conn.execute(select(vault_cards.c.id).where(vault_cards.c.intent_id == pid))).scalars().all()
    assert sorted(ids) == sorted(s.vault_id for s in stored if s is not None)
    for number, one in zip((VISA, MASTERCARD), stored, strict=True):
        assert one is not None
        card = await vault.resolve_token(one.token, merchant_id=mid, intent_id=pid)
        assert (card.details.number, card.details.cvc, card.vault_id) == (number, CVC, one.vault_id)


async def test_token_is_bound_to_its_intent_and_merchant(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    _, other_intent_same_shop = await _intent(gw, shop)
    other_shop, other_intent = await _intent(gw)
    pid, mid = intent["paymentIntentId"], shop.creds.merchant_id
    stored = await _store(gw, mid, pid)
    for merchant_id, intent_id in [
        (mid, other_intent_same_shop["paymentIntentId"]),   # another intent of the merchant
        (other_shop.creds.merchant_id, other_intent["paymentIntentId"]),  # another merchant
        (other_shop.creds.merchant_id, pid),                 # the right intent, wrong merchant
    ]:
        with pytest.raises(ApiError) as refused:
            await _redeem(gw, stored.token, merchant_id=merchant_id, intent_id=intent_id)
        assert refused.value.code == "token_invalid"
    for bogus in ("", "tok_", "tok_" + "a" * 32, stored.token.upper(), None, 42, stored.token + "x"):
        with pytest.raises(ApiError) as refused:
            await _redeem(gw, bogus, merchant_id=mid, intent_id=pid)
        assert refused.value.code == "token_invalid"
    # None of the refusals consumed it.
    card = await _redeem(gw, stored.token, merchant_id=mid, intent_id=pid)
    assert card.details.number == VISA


async def test_concurrent_redemptions_have_one_winner(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    stored = await _store(gw, shop.creds.merchant_id, intent["paymentIntentId"])
    results = await asyncio.gather(*(
        _redeem(gw, stored.token, merchant_id=shop.creds.merchant_id, intent_id=intent["paymentIntentId"])
        for _ in range(20)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, ApiError) and r.code == "token_invalid" for r in results if r not in winners)


@pytest.fixture
async def short_ttl_gw(database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with running_gateway(settings_for(database_url, tmp_path, token_ttl_s=0.3)) as g:
        yield g


async def test_expired_token_is_refused_and_purged(short_ttl_gw: InProcessGateway) -> None:
    gw = short_ttl_gw
    shop, intent = await _intent(gw)
    pid, mid = intent["paymentIntentId"], shop.creds.merchant_id
    unused = await _store(gw, mid, pid)
    used = await _store(gw, mid, pid)
    await _redeem(gw, used.token, merchant_id=mid, intent_id=pid)  # no attempt recorded: nothing in flight
    await eventually(lambda: _past(used.expires_at), timeout=10, what="the tokens' expiry")
    with pytest.raises(ApiError) as expired:
        await _redeem(gw, unused.token, merchant_id=mid, intent_id=pid)
    assert expired.value.code == "token_invalid"
    assert (await vault_row(gw, id=unused.vault_id)).cvc_sealed is not None  # until the purge

    assert (await _vault(gw).purge()).cards_deleted >= 2
    assert await vault_row(gw, id=unused.vault_id) is None  # never charged: nothing kept
    assert await vault_row(gw, id=used.vault_id) is None  # nothing in flight can need it
    # (a used card whose intent has an operation in flight: test_vault_retention.py)
    async with gw.gateway.db.read() as conn:
        left = (await conn.execute(select(vault_cards.c.id).where(
            vault_cards.c.expires_at <= now_us(), vault_cards.c.cvc_sealed.is_not(None)))).all()
    assert left == []


async def _past(us: int) -> bool:
    return now_us() > us


@pytest.mark.parametrize("outcome", [ChargeOutcome.APPROVED, ChargeOutcome.DECLINED, ChargeOutcome.FAILED])
async def test_cvc_is_dropped_with_the_authorizations_outcome(gw: InProcessGateway, outcome: ChargeOutcome) -> None:
    shop, intent = await _intent(gw)
    mid, pid = shop.creds.merchant_id, intent["paymentIntentId"]
    stored = await _store(gw, mid, pid)
    card = await _vault(gw).resolve_token(stored.token, merchant_id=mid, intent_id=pid)  # the attempt consumes it
    store = gw.gateway.payments
    new = NewAttempt(mid, pid, card.summary, card.fingerprint, card.vault_id, "simulator", 60_000_000, 10)
    begun = await store.begin_attempt(new, None)
    assert isinstance(begun, tuple)
    _, attempt = begun
    unknown = ChargeResult(attempt.reference, ChargeOutcome.UNKNOWN)
    await store.settle_attempt(attempt, charge_outcome(unknown, schedule=(1.0,)))
    assert (await vault_row(gw, id=stored.vault_id)).cvc_sealed is not None  # no outcome yet
    result = ChargeResult(attempt.reference, outcome, auth_code="A1", decline_code="generic_decline")
    # In the outcome's own transaction or statement (the store's settle_attempt).
    settled, _ = await store.settle_attempt(attempt, charge_outcome(result, schedule=(1.0,)))
    assert settled is not None
    row = await vault_row(gw, id=stored.vault_id)
    assert row.cvc_sealed is None and row.pan_sealed is not None


async def test_ciphertexts_cannot_be_moved_between_rows(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    _, other = await _intent(gw, shop)
    mid = shop.creds.merchant_id
    a = await _store(gw, mid, intent["paymentIntentId"], VISA)
    b = await _store(gw, mid, other["paymentIntentId"], MASTERCARD)
    c = await _store(gw, mid, intent["paymentIntentId"], MASTERCARD)
    row_a = await vault_row(gw, id=a.vault_id)
    async with gw.gateway.db.write() as conn:
        # b gets a's card number; c gets its own CVC in place of its number.
        await conn.execute(update(vault_cards).where(vault_cards.c.id == b.vault_id)
                           .values(pan_sealed=row_a.pan_sealed))
        await conn.execute(update(vault_cards).where(vault_cards.c.id == c.vault_id)
                           .values(pan_sealed=vault_cards.c.cvc_sealed))
    for stored, pid in ((b, other["paymentIntentId"]), (c, intent["paymentIntentId"])):
        with pytest.raises(ApiError) as refused:
            await _redeem(gw, stored.token, merchant_id=mid, intent_id=pid)
        assert (refused.value.status, refused.value.code) == (500, "internal_error")
        assert VISA not in refused.value.message
    # The untouched row still opens.
    card = await _redeem(gw, a.token, merchant_id=mid, intent_id=intent["paymentIntentId"])
    assert card.details.number == VISA


async def test_data_key_rotation_keeps_old_versions_decrypting(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    mid, pid = shop.creds.merchant_id, intent["paymentIntentId"]
    vault = _vault(gw)
    first_version = vault.keys.active_version
    before = await _store(gw, mid, pid, VISA)
    retired, new_version = await rotate_data_key(gw.gateway.db, gw.gateway.master_key)
    assert retired == [first_version] and new_version == first_version + 1
    await vault.keys.reload()
    assert vault.keys.active_version == new_version
    after = await _store(gw, mid, pid, MASTERCARD)
    assert (await vault_row(gw, id=before.vault_id)).data_key_version == first_version
    assert (await vault_row(gw, id=after.vault_id)).data_key_version == new_version

    # A fresh process (empty key cache) decrypts both versions.
    fresh = VaultService(gw.gateway)
    await fresh.start()
    assert fresh.keys.active_version == new_version
    assert (await _redeem(gw, before.token, merchant_id=mid, intent_id=pid, vault=fresh)).details.number == VISA
    assert (await _redeem(gw, after.token, merchant_id=mid, intent_id=pid, vault=fresh)).details.number == MASTERCARD

    async with gw.gateway.db.read() as conn:
        keys = (await conn.execute(select(sealed_keys).where(sealed_keys.c.purpose == DATA_KEY_PURPOSE))).all()
    states = {k.kid: k.state for k in keys}
    assert states[f"vdk_{first_version}"] == "retired" and states[f"vdk_{new_version}"] == "active"
    assert list(states.values()).count("active") == 1
    for key in keys:  # wrapped by the master key: the raw data key is nowhere
        assert len(bytes(key.sealed)) == 1 + 12 + 32 + 16


async def test_fingerprint_is_keyed_and_stable(gw: InProcessGateway) -> None:
    shop, intent = await _intent(gw)
    mid, pid = shop.creds.merchant_id, intent["paymentIntentId"]
    one = await vault_row(gw, id=(await _store(gw, mid, pid, VISA)).vault_id)
    two = await vault_row(gw, id=(await _store(gw, mid, pid, VISA)).vault_id)
    three = await vault_row(gw, id=(await _store(gw, mid, pid, MASTERCARD)).vault_id)
    assert one.fingerprint == two.fingerprint != three.fingerprint
    import hashlib
    assert one.fingerprint != hashlib.sha256(VISA.encode()).hexdigest()  # keyed, not a bare hash
    assert len(one.fingerprint) == 64


async def test_sqlite_file_holds_no_card_number(gw: InProcessGateway, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("reads the SQLite file; the PostgreSQL dump is checked in the browser tests")
    shop, intent = await _intent(gw)
    number = "378282246310005"
    stored = await _store(gw, shop.creds.merchant_id, intent["paymentIntentId"], number)
    assert stored.summary["last4"] == "0005"
    async with gw.gateway.db.raw_connection() as conn:
        await conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
    path = Path(database_url.removeprefix("sqlite:///"))
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists():
            assert number.encode() not in file.read_bytes(), file
