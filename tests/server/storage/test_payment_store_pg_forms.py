"""PostgreSQL's one-statement processing phases (processing/attempts.py, ``*_at_once``):
the same rows and history as the general functions, nothing changed off the happy path,
the request's answer stored only when it is the settled row's, and no deadlock against a
reconciler settling the same attempt."""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from paygate_server import jsoncodec
from paygate_server.http.idempotency import IdempotencyScope
from paygate_server.intents.schemas import render_intent
from paygate_server.processing.attempts import (
    Answer,
    Attempt,
    NewAttempt,
    apply_charge_result,
    begin_attempt,
    begin_attempt_at_once,
    settle_attempt_at_once,
)
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult
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
        pytest.skip("the one-statement phases are PostgreSQL's (SQLite has no writable CTEs)")


def _new(merchant_id: str, intent_id: str, vault_id: str | None = None) -> NewAttempt:
    return NewAttempt(merchant_id, intent_id, CARD, "f" * 64, vault_id, "simulator", 60.0)


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


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in _VARYING}


async def _state(gw: InProcessGateway, intent_id: str) -> dict[str, Any]:
    """Everything the phases write for one intent, without what varies by payment."""
    async with gw.gateway.db.read() as conn:  # one snapshot for the four reads
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


@pytest.mark.parametrize("outcome", [ChargeOutcome.APPROVED, ChargeOutcome.DECLINED])
async def test_one_statement_phases_write_what_the_general_ones_write(gw: InProcessGateway,
                                                                      outcome: ChargeOutcome) -> None:
    db = gw.gateway.db
    shop = await gw.new_merchant()
    general_id = (await shop.create_intent())["paymentIntentId"]
    at_once_id = (await shop.create_intent())["paymentIntentId"]
    merchant_id = shop.creds.merchant_id

    general_scope, at_once_scope = _scope(gw, shop, "general"), _scope(gw, shop, "at-once")
    # Paid with checkout tokens: settling drops the vaulted CVC (the vault ids differ by payment).
    general_vault, at_once_vault = await _vaulted(gw, merchant_id, general_id), await _vaulted(gw, merchant_id, at_once_id)
    async with db.write() as conn:
        assert await general_scope.begin(conn) is None
        _, general = await begin_attempt(conn, _new(merchant_id, general_id, general_vault))
    async with db.autocommit() as conn:
        begun = await begin_attempt_at_once(conn, _new(merchant_id, at_once_id, at_once_vault),
                                            key=at_once_scope.statement_params())
    assert begun is not None
    before, at_once = begun
    assert (before["status"], before["version"]) == ("in_progress", 2)
    assert await _state(gw, general_id) == await _state(gw, at_once_id)
    assert (await _key_row(gw, at_once_scope))["state"] == "in_progress"  # type: ignore[index]

    def result(attempt: Attempt) -> ChargeResult:
        return ChargeResult(attempt.reference, outcome, auth_code="A1B2C3", decline_code="insufficient_funds")

    async def answer_general(conn: Any, row: Mapping[str, Any]) -> None:
        await general_scope.complete_once(conn, 200, jsoncodec.dumps(render_intent(row)))

    async with db.write() as conn:
        general_row = await apply_charge_result(conn, general.transaction_id, result(general),
                                                schedule=SCHEDULE, on_settled=answer_general)
    answer = Answer(at_once_scope.statement_params(), before, lambda row: jsoncodec.dumps(render_intent(row)),
                    at_once_scope.seal)
    async with db.autocommit() as conn:
        at_once_row, answered = await settle_attempt_at_once(conn, at_once, result(at_once), answer=answer)
    assert general_row is not None and at_once_row is not None and answered
    assert _plain(general_row) == _plain(at_once_row)
    assert await _state(gw, general_id) == await _state(gw, at_once_id)
    assert (await _state(gw, at_once_id))["cvc_kept"] == 0
    # The answer rendered in advance is byte for byte the settled row's.
    stored = await _key_row(gw, at_once_scope)
    assert stored is not None and stored["state"] == "done" and stored["response_status"] == 200
    async with gw.gateway.db.read() as conn:
        assert await at_once_scope.stored(conn) == (200, jsoncodec.dumps(render_intent(at_once_row)))


async def test_begin_changes_nothing_off_the_happy_path(gw: InProcessGateway) -> None:
    db = gw.gateway.db
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    scope = _scope(gw, shop, "used")
    async with db.write() as conn:
        assert await scope.begin(conn) is None  # the key is taken (a retry, or a reuse)
    untouched = await _state(gw, intent_id)

    async with db.autocommit() as conn:
        # The key exists: the whole statement fails, the intent stays as it was.
        assert await begin_attempt_at_once(conn, _new(merchant_id, intent_id),
                                           key=scope.statement_params()) is None
        # No such intent, or another merchant's.
        assert await begin_attempt_at_once(conn, _new(merchant_id, "pi_missing"), key=None) is None
        assert await begin_attempt_at_once(conn, _new("mer_other", intent_id), key=None) is None
    assert await _state(gw, intent_id) == untouched

    async with db.autocommit() as conn:
        assert await begin_attempt_at_once(conn, _new(merchant_id, intent_id), key=None) is not None
        in_progress = await _state(gw, intent_id)
        # Already in progress: no second attempt, no claim of a fresh key.
        fresh = _scope(gw, shop, "fresh")
        assert await begin_attempt_at_once(conn, _new(merchant_id, intent_id),
                                           key=fresh.statement_params()) is None
    assert await _state(gw, intent_id) == in_progress
    assert await _key_row(gw, fresh) is None


async def test_settle_after_a_reconciler_changes_nothing(gw: InProcessGateway) -> None:
    db = gw.gateway.db
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    async with db.autocommit() as conn:
        begun = await begin_attempt_at_once(conn, _new(merchant_id, intent_id), key=None)
    assert begun is not None
    before, attempt = begun
    async with db.write() as conn:  # the reconciler learns the outcome first
        assert await apply_charge_result(conn, attempt.transaction_id,
                                         ChargeResult(attempt.reference, ChargeOutcome.APPROVED, auth_code="X"),
                                         schedule=SCHEDULE) is not None
    settled = await _state(gw, intent_id)
    async with db.autocommit() as conn:
        late = ChargeResult(attempt.reference, ChargeOutcome.DECLINED, decline_code="generic_decline")
        assert await settle_attempt_at_once(conn, attempt, late, answer=None) == (None, False)
    assert await _state(gw, intent_id) == settled


async def test_the_answer_is_stored_only_if_the_intent_is_as_the_first_phase_left_it(gw: InProcessGateway) -> None:
    db = gw.gateway.db
    shop, merchant_id, intent_id = await _shop_with_intent(gw)
    scope = _scope(gw, shop, "k")
    async with db.autocommit() as conn:
        begun = await begin_attempt_at_once(conn, _new(merchant_id, intent_id),
                                            key=scope.statement_params())
        assert begun is not None
        before, attempt = begun
        # Someone else changed the intent meanwhile: the answer rendered from ``before``
        # would be stale, so it is not stored (the caller stores the real one).
        await execute(conn, Sql("UPDATE payment_intents SET version = version + 1 WHERE id = :id"), id=intent_id)
        answer = Answer(scope.statement_params(), before, lambda row: jsoncodec.dumps(render_intent(row)),
                        scope.seal)
        row, answered = await settle_attempt_at_once(
            conn, attempt, ChargeResult(attempt.reference, ChargeOutcome.APPROVED, auth_code="X"), answer=answer)
    assert row is not None and row["status"] == "succeeded" and not answered
    assert (await _key_row(gw, scope))["state"] == "in_progress"  # type: ignore[index]


async def test_racing_a_reconciler_settles_once_without_deadlock(gw: InProcessGateway) -> None:
    db = gw.gateway.db
    shop = await gw.new_merchant()
    merchant_id = shop.creds.merchant_id
    attempts: list[Attempt] = []
    for _ in range(12):
        intent_id = (await shop.create_intent())["paymentIntentId"]
        async with db.autocommit() as conn:
            begun = await begin_attempt_at_once(conn, _new(merchant_id, intent_id), key=None)
        assert begun is not None
        attempts.append(begun[1])

    async def by_request(attempt: Attempt) -> bool:
        async with db.autocommit() as conn:
            row, _ = await settle_attempt_at_once(
                conn, attempt, ChargeResult(attempt.reference, ChargeOutcome.APPROVED, auth_code="REQ"), answer=None)
        return row is not None

    async def by_reconciler(attempt: Attempt) -> bool:
        async with db.write() as conn:
            row = await apply_charge_result(
                conn, attempt.transaction_id,
                ChargeResult(attempt.reference, ChargeOutcome.APPROVED, auth_code="REC"), schedule=SCHEDULE)
        return row is not None

    outcomes = await asyncio.gather(*(f(a) for a in attempts for f in (by_request, by_reconciler)))
    for i, attempt in enumerate(attempts):
        assert outcomes[2 * i] != outcomes[2 * i + 1], "exactly one of the two settles each attempt"
        state = await _state(gw, attempt.intent_id)
        assert [h[2] for h in state["history"]] == [1, 2, 3, 4, 5]  # gap-free, one settlement
        assert state["intent"]["status"] == "succeeded" and state["queued"] == 0
