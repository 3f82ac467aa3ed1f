"""PostgreSQL's one-statement forms (:class:`PostgresPaymentStore`) against the general form
(:class:`SqlPaymentStore`'s multi-statement transactions, on the same database): the same
rows and history, nothing changed off the happy path (and no fall-back to the general form
there), the request's answer stored only when it is the settled row's, and one settlement
without deadlock when racing the general form (the reconciler's path)."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from paygate_server import jsoncodec
from paygate_server.http.api import IdempotencyScope
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
from paygate_server.processing.service import charge_outcome
from paygate_server.storage.payments import SqlPaymentStore
from paygate_server.storage.payments_pg import PostgresPaymentStore
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    NewAttempt,
    Outcome,
    Row,
)
from paygate_server.storage.statements import Sql, execute, fetch_all, fetch_one, fetch_value
from tests.server.checkout.helpers import resolved_card
from tests.support.app import InProcessGateway
from tests.support.signing import SignedClient

CARD = {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
SCHEDULE = (1.0,)
_HISTORY = Sql("SELECT entity, op, intent_seq, data FROM change_log WHERE intent_id = :intent_id ORDER BY intent_seq")
_ATTEMPTS = Sql("SELECT * FROM transactions WHERE intent_id = :intent_id")
_QUEUE = Sql("SELECT count(*) FROM reconcile_queue WHERE intent_id = :intent_id")
_KEY = Sql("SELECT state, response_status, response_body FROM idempotency_keys"
           " WHERE merchant_id = :merchant_id AND idempotency_key = :key")
_INTENT = Sql("SELECT * FROM payment_intents WHERE id = :intent_id")
_CVC_KEPT = Sql("SELECT count(*) FROM vault_cards WHERE intent_id = :intent_id AND cvc_sealed IS NOT NULL")

# Values that differ between any two payments: ids, times, references.
_VARYING = {"id", "intent_id", "entity_id", "reference", "created_at", "updated_at", "txid", "client_secret_hash",
            "vault_id"}


@pytest.fixture(autouse=True)
def _postgresql_only(gw: InProcessGateway) -> None:
    if gw.gateway.db.is_sqlite:
        pytest.skip("the one-statement forms are PostgreSQL's (SQLite has no writable CTEs)")


class GeneralForm(PostgresPaymentStore):
    """The general form as PostgreSQL runs it: :class:`SqlPaymentStore`'s multi-statement
    transactions with PostgreSQL's intent row lock — what the one-statement forms fall back
    to, and what an unknown outcome takes. (A bare ``SqlPaymentStore`` takes no row lock:
    on PostgreSQL it would deadlock against the one-statement settle.)"""

    begin_attempt = SqlPaymentStore.begin_attempt
    settle_attempt = SqlPaymentStore.settle_attempt


def _stores(gw: InProcessGateway) -> tuple[PostgresPaymentStore, GeneralForm]:
    """The gateway's store (one statement per phase) and the general form on its database."""
    at_once = gw.gateway.payments
    assert isinstance(at_once, PostgresPaymentStore)
    return at_once, GeneralForm(gw.gateway.db)


def _new(merchant_id: str, intent_id: str, vault_id: str | None = None) -> NewAttempt:
    return NewAttempt(merchant_id, intent_id, CARD, "f" * 64, vault_id, "simulator", 60_000_000, 10)


def _outcome(attempt: Attempt, outcome: ChargeOutcome, code: str) -> Outcome:
    return charge_outcome(ChargeResult(attempt.reference, outcome, auth_code=code, decline_code="insufficient_funds"),
                          schedule=SCHEDULE)


def _render(row: Row) -> bytes:
    return jsoncodec.dumps(render_intent(row))


async def _vaulted(gw: InProcessGateway, merchant_id: str, intent_id: str) -> str:
    """A vault row (with its CVC) for the intent, as a checkout token makes; its id."""
    vault = gw.gateway.vault
    async with gw.gateway.db.write() as conn:
        stored = await vault.store(conn, resolved_card(gw), merchant_id=merchant_id, intent_id=intent_id)
    return stored.vault_id


def _scope(gw: InProcessGateway, shop: SignedClient, key: str) -> IdempotencyScope:
    return IdempotencyScope(gw.gateway, shop.creds.merchant_id, key, "POST", "/api/v1/payment/process", b"{}")


async def _shop_with_intent(gw: InProcessGateway) -> tuple[SignedClient, str, str]:
    """A new merchant's client, its merchant id, and one fresh intent of it."""
    shop = await gw.new_merchant()
    return shop, shop.creds.merchant_id, (await shop.create_intent())["paymentIntentId"]


async def _begun(store: PostgresPaymentStore, new: NewAttempt, scope: IdempotencyScope | None = None) -> tuple[Row, Attempt]:
    begun = await store.begin_attempt(new, None if scope is None else scope.claim)
    assert not isinstance(begun, ExistingKey)
    return begun


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in _VARYING}


async def _state(gw: InProcessGateway, intent_id: str) -> dict[str, Any]:
    """Everything the phases write for one intent, without what varies by payment."""
    async with gw.gateway.db.read() as conn:  # one snapshot for the reads
        history = [(r["entity"], r["op"], r["intent_seq"], _plain(jsoncodec.loads(r["data"])))
                   for r in await fetch_all(conn, _HISTORY, intent_id=intent_id)]
        attempts = [_plain(r) for r in await fetch_all(conn, _ATTEMPTS, intent_id=intent_id)]
        queued = await fetch_value(conn, _QUEUE, intent_id=intent_id)
        intent = _plain(await fetch_one(conn, _INTENT, intent_id=intent_id) or {})
        cvc_kept = await fetch_value(conn, _CVC_KEPT, intent_id=intent_id)
    return {"history": history, "attempts": attempts, "queued": queued, "intent": intent, "cvc_kept": cvc_kept}


async def _key_row(gw: InProcessGateway, scope: IdempotencyScope) -> Mapping[str, Any] | None:
    async with gw.gateway.db.read_one() as conn:
        return await fetch_one(conn, _KEY, merchant_id=scope.merchant_id, key=scope.key)


@pytest.fixture
def no_general_form(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off the happy path the one-statement forms answer from a read-only lookup: the
    general form's multi-statement transaction must not run."""
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fell back to the general form")

    for name in ("begin_attempt", "settle_attempt"):
        monkeypatch.setattr(SqlPaymentStore, name, refuse)


@pytest.mark.parametrize("outcome", [ChargeOutcome.APPROVED, ChargeOutcome.DECLINED])
async def test_one_statement_phases_write_what_the_general_ones_write(gw: InProcessGateway,
                                                                      outcome: ChargeOutcome) -> None:
    at_once_store, general_store = _stores(gw)
    shop = await gw.new_merchant()
    general_id = (await shop.create_intent())["paymentIntentId"]
    at_once_id = (await shop.create_intent())["paymentIntentId"]
    merchant_id = shop.creds.merchant_id

    general_scope, at_once_scope = _scope(gw, shop, "general"), _scope(gw, shop, "at-once")
    # Paid with checkout tokens: settling drops the vaulted CVC (the vault ids differ by payment).
    general_vault, at_once_vault = await _vaulted(gw, merchant_id, general_id), await _vaulted(gw, merchant_id, at_once_id)
    general_before, general = await _begun(general_store, _new(merchant_id, general_id, general_vault), general_scope)
    before, at_once = await _begun(at_once_store, _new(merchant_id, at_once_id, at_once_vault), at_once_scope)
    assert (before["status"], before["version"]) == ("in_progress", 2)
    assert _plain(general_before) == _plain(before)
    assert await _state(gw, general_id) == await _state(gw, at_once_id)
    assert (await _key_row(gw, at_once_scope))["state"] == "in_progress"  # type: ignore[index]

    general_row, general_answered = await general_store.settle_attempt(
        general, _outcome(general, outcome, "A1B2C3"), before=general_before,
        answer=AnswerSpec(general_scope.claim, _render))
    at_once_row, answered = await at_once_store.settle_attempt(
        at_once, _outcome(at_once, outcome, "A1B2C3"), before=before, answer=AnswerSpec(at_once_scope.claim, _render))
    assert general_row is not None and at_once_row is not None and general_answered and answered
    assert _plain(general_row) == _plain(at_once_row)
    assert await _state(gw, general_id) == await _state(gw, at_once_id)
    assert (await _state(gw, at_once_id))["cvc_kept"] == 0
    # The answer rendered in advance is byte for byte the settled row's.
    stored = await _key_row(gw, at_once_scope)
    assert stored is not None and stored["state"] == "done" and stored["response_status"] == 200
    replay = await at_once_store.stored_answer(at_once_scope.claim)
    assert replay is not None and at_once_scope.open(replay[1]) == _render(at_once_row)
    general_replay = await general_store.stored_answer(general_scope.claim)
    assert general_replay is not None and general_scope.open(general_replay[1]) == _render(general_row)


async def test_begin_changes_nothing_off_the_happy_path(gw: InProcessGateway, no_general_form: None) -> None:
    store, _ = _stores(gw)
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    scope = _scope(gw, shop, "used")
    other_id = (await shop.create_intent())["paymentIntentId"]
    await _begun(store, _new(merchant_id, other_id), scope)  # the key is taken (a retry, or a reuse)
    untouched = await _state(gw, intent_id)

    # The key exists: the whole statement fails, the intent stays as it was.
    existing = await store.begin_attempt(_new(merchant_id, intent_id), scope.claim)
    assert isinstance(existing, ExistingKey) and existing.state == "in_progress"
    # No such intent, or another merchant's.
    with pytest.raises(IntentMissing):
        await store.begin_attempt(_new(merchant_id, "pi_missing"), None)
    with pytest.raises(IntentMissing):
        await store.begin_attempt(_new("mer_other", intent_id), None)
    assert await _state(gw, intent_id) == untouched

    await _begun(store, _new(merchant_id, intent_id))
    in_progress = await _state(gw, intent_id)
    # Already in progress: no second attempt, no claim of a fresh key.
    fresh = _scope(gw, shop, "fresh")
    with pytest.raises(IntentNotInStatus):
        await store.begin_attempt(_new(merchant_id, intent_id), fresh.claim)
    assert await _state(gw, intent_id) == in_progress
    assert await _key_row(gw, fresh) is None


async def test_settle_after_a_reconciler_changes_nothing(gw: InProcessGateway) -> None:
    store, general = _stores(gw)
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    _, attempt = await _begun(store, _new(merchant_id, intent_id))
    # The reconciler learns the outcome first.
    row, _ = await general.settle_attempt(attempt, _outcome(attempt, ChargeOutcome.APPROVED, "X"))
    assert row is not None
    settled = await _state(gw, intent_id)
    late = _outcome(attempt, ChargeOutcome.DECLINED, "X")
    assert await store.settle_attempt(attempt, late) == (None, False)
    assert await _state(gw, intent_id) == settled


async def test_the_answer_is_stored_only_if_the_intent_is_as_the_first_phase_left_it(gw: InProcessGateway) -> None:
    store, _ = _stores(gw)
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    scope = _scope(gw, shop, "k")
    before, attempt = await _begun(store, _new(merchant_id, intent_id), scope)
    # Someone else changed the intent meanwhile: the answer rendered from ``before`` would
    # be stale, so it is not stored (the caller stores the real one).
    async with gw.gateway.db.autocommit() as conn:
        await execute(conn, Sql("UPDATE payment_intents SET version = version + 1 WHERE id = :id"), id=intent_id)
    row, answered = await store.settle_attempt(attempt, _outcome(attempt, ChargeOutcome.APPROVED, "X"),
                                               before=before, answer=AnswerSpec(scope.claim, _render))
    assert row is not None and row["status"] == "succeeded" and not answered
    assert (await _key_row(gw, scope))["state"] == "in_progress"  # type: ignore[index]


async def test_racing_a_reconciler_settles_once_without_deadlock(gw: InProcessGateway) -> None:
    store, general = _stores(gw)
    shop = await gw.new_merchant()
    merchant_id = shop.creds.merchant_id
    attempts: list[Attempt] = []
    for _ in range(40):
        intent_id = (await shop.create_intent())["paymentIntentId"]
        attempts.append((await _begun(store, _new(merchant_id, intent_id)))[1])

    async def by_request(attempt: Attempt) -> bool:
        row, _ = await store.settle_attempt(attempt, _outcome(attempt, ChargeOutcome.APPROVED, "REQ"))
        return row is not None

    async def by_reconciler(attempt: Attempt) -> bool:
        row, _ = await general.settle_attempt(attempt, _outcome(attempt, ChargeOutcome.APPROVED, "REC"))
        return row is not None

    outcomes = await asyncio.gather(*(f(a) for a in attempts for f in (by_request, by_reconciler)))
    for i, attempt in enumerate(attempts):
        assert outcomes[2 * i] != outcomes[2 * i + 1], "exactly one of the two settles each attempt"
        state = await _state(gw, attempt.intent_id)
        assert [h[2] for h in state["history"]] == [1, 2, 3, 4, 5]  # gap-free, one settlement
        assert state["intent"]["status"] == "succeeded" and state["queued"] == 0
