"""The store's contract (storage/port.py): every ``PaymentStore`` operation on SQLite and on
PostgreSQL (``gw`` runs each test on both), judged by what it returns and by the rows it
leaves behind — intents and charge attempts here; refunds in test_payment_store_refunds.py;
idempotency keys, the reconciler's queue and the settlement report in
test_payment_store_keys_queue.py. How PostgreSQL's one-statement forms compare with the
general form: test_payment_store_pg_forms.py."""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.intents.schemas import CreateIntent
from paygate_server.intents.service import new_intent
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.checkout import count_tokenization
from paygate_server.storage.port import (
    AnswerSpec,
    AttemptInFlight,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    Outcome,
    PaymentStore,
    TokenSpent,
    TooManyFailures,
)
from tests.server.checkout.helpers import vault_row
from tests.server.storage.payment_store_helpers import (
    APPROVED,
    CARD,
    DECLINED,
    MINUTE_US,
    Shop,
    new_shop,
    render,
    unknown,
)
from tests.support.app import InProcessGateway

# --- intents ---------------------------------------------------------------------------


async def test_create_intent_without_a_key(shop: Shop) -> None:
    row = await shop.intent()
    assert await shop.current(row["id"]) == row
    assert await shop.store.get_intent("mer_other", row["id"]) is None
    assert await shop.store.get_intent(shop.merchant_id, "pi_missing") is None


async def test_create_intent_with_a_key_answers_a_repeat_with_the_first_answer(shop: Shop) -> None:
    scope = shop.scope("create-1", "/api/v1/payment/intent")
    first, _ = new_intent(shop.merchant_id, CreateIntent(1999, "USD", {"name": "Mug"}, None, {}))
    assert await shop.store.create_intent(first, scope.claim, b'{"first":1}') is None
    found = await shop.store.find_key(scope.claim)
    assert found is not None and (found.state, found.response_status) == ("done", 201)
    assert found.response_body is not None and scope.open(found.response_body) == b'{"first":1}'

    again, _ = new_intent(shop.merchant_id, CreateIntent(500, "EUR", {"name": "Cup"}, None, {}))
    existing = await shop.store.create_intent(again, scope.claim, b'{"again":1}')
    assert isinstance(existing, ExistingKey)
    assert (existing.request_hash, existing.state, existing.response_status) == (scope.request_hash, "done", 201)
    assert existing.response_body is not None and scope.open(existing.response_body) == b'{"first":1}'
    assert await shop.store.get_intent(shop.merchant_id, again["id"]) is None  # nothing created
    assert await shop.current(first["id"]) == first


async def test_checkout_intent_by_client_secret_hash_with_its_tokenizations(shop: Shop) -> None:
    row = await shop.intent()
    assert await shop.store.checkout_intent(row["client_secret_hash"]) == (row, 0)
    for expected in (1, 2):
        async with shop.gw.gateway.db.write() as conn:
            assert await count_tokenization(conn, row["id"], limit=20, now=now_us())
        assert await shop.store.checkout_intent(row["client_secret_hash"]) == (row, expected)
    assert await shop.store.checkout_intent("0" * 64) is None


async def test_list_intents_pages_newest_first_and_filters_by_status(gw: InProcessGateway, shop: Shop) -> None:
    made = [await shop.intent() for _ in range(5)]
    newest_first = [r["id"] for r in sorted(made, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
    store, mid = shop.store, shop.merchant_id
    seen: list[str] = []
    cursor, more = None, True
    for expect_more in (True, True, False):
        assert more
        page, more = await store.list_intents(mid, limit=2, starting_after=cursor, status=None)
        assert more is expect_more
        seen += [r["id"] for r in page]
        cursor = page[-1]["id"]
    assert seen == newest_first
    assert [dict(r) for r in (await store.list_intents(mid, limit=10, starting_after=None, status=None))[0]] == \
        sorted(made, key=lambda r: (r["created_at"], r["id"]), reverse=True)

    for intent_id in newest_first[1:3]:
        await store.cancel_intent(mid, intent_id, None)
    canceled, more = await store.list_intents(mid, limit=10, starting_after=None, status="canceled")
    assert [r["id"] for r in canceled] == newest_first[1:3] and not more
    assert await store.list_intents(mid, limit=10, starting_after="pi_missing", status=None) == ([], False)
    other = await new_shop(gw)
    assert await store.list_intents(other.merchant_id, limit=10, starting_after=None, status=None) == ([], False)


async def test_cancel_intent(shop: Shop) -> None:
    store, mid = shop.store, shop.merchant_id
    row = await shop.intent()
    canceled = await store.cancel_intent(mid, row["id"], None)
    assert not isinstance(canceled, ExistingKey)
    assert (canceled["status"], canceled["version"]) == ("canceled", 2)
    assert dict(canceled) == await shop.current(row["id"])
    with pytest.raises(IntentNotInStatus) as refused:
        await store.cancel_intent(mid, row["id"], None)
    assert refused.value.status == "canceled"
    with pytest.raises(IntentMissing):
        await store.cancel_intent(mid, "pi_missing", None)
    other = await shop.intent()
    with pytest.raises(IntentMissing):
        await store.cancel_intent("mer_other", other["id"], None)
    assert await shop.current(other["id"]) == other


async def test_cancel_with_a_key_stores_its_answer(shop: Shop) -> None:
    store, mid = shop.store, shop.merchant_id
    row = await shop.intent()
    scope = shop.scope("cancel-1", f"/api/v1/payment/intent/{row['id']}/cancel")
    canceled = await store.cancel_intent(mid, row["id"], AnswerSpec(scope.claim, render))
    assert not isinstance(canceled, ExistingKey)
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200 and scope.open(stored[1]) == render(canceled)
    again = await store.cancel_intent(mid, row["id"], AnswerSpec(scope.claim, render))
    assert isinstance(again, ExistingKey) and (again.state, again.response_status) == ("done", 200)

    # A refused cancel keeps no claim: the key stays free for a corrected request.
    refused = shop.scope("cancel-2")
    with pytest.raises(IntentNotInStatus):
        await store.cancel_intent(mid, row["id"], AnswerSpec(refused.claim, render))
    assert await store.find_key(refused.claim) is None


# --- charge attempts -------------------------------------------------------------------


async def test_begin_attempt(shop: Shop) -> None:
    intent = await shop.intent()
    vault_id = await shop.vaulted(intent["id"])
    started = now_us()
    row, attempt = await shop.begin(intent["id"], vault_id)
    assert (row["status"], row["version"], jsoncodec.loads(row["card"])) == ("in_progress", 2, CARD)
    assert dict(row) == await shop.current(intent["id"])
    assert (attempt.intent_id, attempt.merchant_id, attempt.amount, attempt.currency) == \
        (intent["id"], shop.merchant_id, 1999, "USD")
    [txn] = await shop.attempts(intent["id"])
    assert (txn["id"], txn["reference"], txn["status"], txn["connector"], txn["amount"], txn["vault_id"]) == \
        (attempt.transaction_id, attempt.reference, "pending", "simulator", 1999, vault_id)
    assert (txn["card_brand"], txn["card_last4"], txn["card_fingerprint"]) == ("visa", "4242", "f" * 64)
    [check] = await shop.checks(intent["id"])
    assert (check["kind"], check["object_id"], check["checks"]) == ("charge", attempt.transaction_id, 0)
    assert started + MINUTE_US <= check["due_at"] <= now_us() + MINUTE_US
    assert (await vault_row(shop.gw, id=vault_id)).used_at is not None  # the attempt consumed the token
    found = await shop.store.attempt_for_check(attempt.transaction_id)
    assert found is not None and (found["reference"], found["status"]) == (attempt.reference, "pending")
    assert await shop.store.attempt_for_check("txn_missing") is None


async def test_begin_attempt_refusals_change_nothing(gw: InProcessGateway, shop: Shop) -> None:
    store = shop.store
    intent = await shop.intent()
    with pytest.raises(IntentMissing):
        await store.begin_attempt(shop.new_attempt("pi_missing"), None)
    other = await new_shop(gw)
    with pytest.raises(IntentMissing):
        await store.begin_attempt(other.new_attempt(intent["id"]), None)
    assert await shop.unchanged(intent["id"]) == {"intent": intent, "attempts": [], "checks": []}

    await shop.begin(intent["id"])
    in_progress = await shop.unchanged(intent["id"])
    fresh = shop.scope("begin-again")
    with pytest.raises(IntentNotInStatus) as refused:
        await store.begin_attempt(shop.new_attempt(intent["id"]), fresh.claim)
    assert refused.value.status == "in_progress"
    assert await shop.unchanged(intent["id"]) == in_progress
    assert await store.find_key(fresh.claim) is None  # no claim kept


async def test_too_many_failures(shop: Shop) -> None:
    intent = await shop.intent()
    for _ in range(2):
        begun = await shop.store.begin_attempt(shop.new_attempt(intent["id"], max_failed=2), None)
        assert not isinstance(begun, ExistingKey)
        await shop.store.settle_attempt(begun[1], DECLINED)
    failed = await shop.unchanged(intent["id"])
    assert (failed["intent"]["status"], failed["intent"]["failed_attempts"]) == ("failed", 2)
    with pytest.raises(TooManyFailures):
        await shop.store.begin_attempt(shop.new_attempt(intent["id"], max_failed=2), None)
    assert await shop.unchanged(intent["id"]) == failed
    # Under a higher limit the same intent may try again.
    await shop.store.begin_attempt(shop.new_attempt(intent["id"], max_failed=3), None)
    assert (await shop.current(intent["id"]))["status"] == "in_progress"


async def test_a_spent_token_refuses_the_attempt_and_changes_nothing(shop: Shop) -> None:
    intent = await shop.intent()
    vault_id = await shop.vaulted(intent["id"])
    assert await shop.store.redeem_token(vault_id) is True
    assert await shop.store.redeem_token(vault_id) is False
    assert await shop.store.redeem_token("vlt_missing") is False
    scope = shop.scope("spent")
    with pytest.raises(TokenSpent):
        await shop.store.begin_attempt(shop.new_attempt(intent["id"], vault_id), scope.claim)
    assert await shop.unchanged(intent["id"]) == {"intent": intent, "attempts": [], "checks": []}
    assert await shop.store.find_key(scope.claim) is None


async def test_begin_with_a_key_in_progress_or_abandoned(shop: Shop) -> None:
    store = shop.store
    first, second = await shop.intent(), await shop.intent()
    scope = shop.scope("process-1")
    await shop.begin(first["id"], claim=scope.claim)
    claimed = await store.find_key(scope.claim)
    assert claimed is not None and claimed.state == "in_progress"

    existing = await store.begin_attempt(shop.new_attempt(second["id"]), scope.claim)
    assert existing == claimed  # still running: the endpoint answers 409
    assert await shop.unchanged(second["id"]) == {"intent": second, "attempts": [], "checks": []}

    # Abandoned (its lock is older than ``stale_before``): said so, and nothing begun again —
    # the first phase of its request committed with the claim.
    abandoned = dataclasses.replace(scope.claim, stale_before=now_us() + MINUTE_US)
    found = await store.begin_attempt(shop.new_attempt(second["id"]), abandoned)
    assert found == dataclasses.replace(claimed, abandoned=True)
    assert await shop.unchanged(second["id"]) == {"intent": second, "attempts": [], "checks": []}
    assert len(await shop.attempts(first["id"])) == 1
    assert await store.find_key(scope.claim) == claimed  # not taken over


async def test_settle_unknown_keeps_the_attempt_unknown_and_moves_its_check(shop: Shop) -> None:
    intent = await shop.intent()
    scope = shop.scope("unknown")
    before, attempt = await shop.begin(intent["id"], claim=scope.claim)
    due = now_us() + 5 * MINUTE_US
    row, answered = await shop.store.settle_attempt(attempt, unknown(due, 1), before=before,
                                                    answer=AnswerSpec(scope.claim, render))
    assert row is not None and dict(row) == dict(before) and not answered
    [txn] = await shop.attempts(intent["id"])
    assert (txn["status"], txn["error_message"]) == ("unknown", "processor timeout")
    [check] = await shop.checks(intent["id"])
    assert (check["due_at"], check["checks"], check["last_result"]) == (due, 1, "timeout")
    assert (await shop.store.find_key(scope.claim)).state == "in_progress"  # type: ignore[union-attr]

    await shop.store.settle_attempt(attempt, unknown(due + 1, 2))
    [check] = await shop.checks(intent["id"])
    assert (check["due_at"], check["checks"]) == (due + 1, 2)
    row, _ = await shop.store.settle_attempt(attempt, APPROVED)
    assert row is not None and row["status"] == "succeeded" and await shop.checks(intent["id"]) == []


@pytest.mark.parametrize("outcome", [APPROVED, DECLINED], ids=["approved", "declined"])
async def test_settle_attempt_once(shop: Shop, outcome: Outcome) -> None:
    intent = await shop.intent()
    _, attempt = await shop.begin(intent["id"])
    row, answered = await shop.store.settle_attempt(attempt, outcome)
    assert row is not None and not answered
    assert dict(row) == await shop.current(intent["id"])
    [txn] = await shop.attempts(intent["id"])
    if outcome is APPROVED:
        assert (row["status"], row["last_error"], row["failed_attempts"]) == ("succeeded", None, 0)
        assert (txn["status"], txn["auth_code"]) == ("succeeded", "A1B2C3")
    else:
        assert (row["status"], row["last_error"], row["failed_attempts"]) == ("failed", DECLINED.intent_error, 1)
        assert (txn["status"], txn["decline_code"], txn["error_code"], txn["error_message"]) == \
            ("failed", "insufficient_funds", "card_declined", "The card has insufficient funds.")
    assert row["version"] == 3 and await shop.checks(intent["id"]) == []
    settled = await shop.unchanged(intent["id"])
    for late in (APPROVED, DECLINED, unknown(now_us(), 1)):
        assert await shop.store.settle_attempt(attempt, late) == (None, False)
    assert await shop.unchanged(intent["id"]) == settled


@pytest.mark.parametrize("outcome", [APPROVED, DECLINED], ids=["approved", "declined"])
async def test_settle_stores_the_answer_of_the_row_it_returns(shop: Shop, outcome: Outcome) -> None:
    intent = await shop.intent()
    scope = shop.scope("answered")
    before, attempt = await shop.begin(intent["id"], claim=scope.claim)
    row, answered = await shop.store.settle_attempt(attempt, outcome, before=before,
                                                    answer=AnswerSpec(scope.claim, render))
    assert row is not None and answered
    stored = await shop.store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200
    assert scope.open(stored[1]) == render(row) == render(await shop.current(intent["id"]))  # byte for byte


async def test_the_cvc_goes_with_the_outcome(shop: Shop) -> None:
    intent = await shop.intent()
    vault_id = await shop.vaulted(intent["id"])
    _, attempt = await shop.begin(intent["id"], vault_id)
    assert (await vault_row(shop.gw, id=vault_id)).cvc_sealed is not None
    await shop.store.settle_attempt(attempt, unknown(now_us() + MINUTE_US, 1))
    assert (await vault_row(shop.gw, id=vault_id)).cvc_sealed is not None  # no outcome yet
    await shop.store.settle_attempt(attempt, DECLINED)
    assert (await vault_row(shop.gw, id=vault_id)).cvc_sealed is None


async def test_concurrent_settles_settle_once(shop: Shop) -> None:
    intent = await shop.intent()
    _, attempt = await shop.begin(intent["id"])
    results = await asyncio.gather(*(shop.store.settle_attempt(attempt, (APPROVED, DECLINED)[i % 2])
                                     for i in range(10)))
    won = [row for row, _ in results if row is not None]
    assert len(won) == 1 and dict(won[0]) == await shop.current(intent["id"])
    changes = await ChangeLog(shop.gw.gateway.db).of_intent(intent["id"], merchant_id=shop.merchant_id)
    assert [c.intent_seq for c in changes] == [1, 2, 3, 4, 5]  # create, begin (2), one settle (2)
    [txn] = await shop.attempts(intent["id"])
    assert txn["status"] == {"succeeded": "succeeded", "failed": "failed"}[won[0]["status"]]


async def test_an_unknown_outcome_racing_a_settle_leaves_no_check_behind(shop: Shop) -> None:
    """An unknown outcome that reads the attempt before a settle commits, and gets the lock
    after it, must not put the settled attempt back on the reconciler's queue."""
    attempts = [(await shop.begin((await shop.intent())["id"]))[1] for _ in range(20)]
    await asyncio.gather(*(shop.store.settle_attempt(attempt, outcome) for attempt in attempts
                           for outcome in (unknown(now_us() + MINUTE_US, 1), APPROVED)))
    for attempt in attempts:
        assert [t["status"] for t in await shop.attempts(attempt.intent_id)] == ["succeeded"]
        assert await shop.checks(attempt.intent_id) == []

async def test_concurrent_begins_start_one_attempt(shop: Shop) -> None:
    intent = await shop.intent()
    results = await asyncio.gather(*(shop.store.begin_attempt(shop.new_attempt(intent["id"]), None)
                                     for _ in range(10)), return_exceptions=True)
    begun = [r for r in results if isinstance(r, tuple)]
    assert len(begun) == 1
    assert all(isinstance(r, IntentNotInStatus | AttemptInFlight) for r in results if not isinstance(r, tuple))
    assert [a["id"] for a in await shop.attempts(intent["id"])] == [begun[0][1].transaction_id]
    assert len(await shop.checks(intent["id"])) == 1


def test_every_operation_of_the_port_is_covered() -> None:
    """A new operation on the port needs its contract test."""
    here = Path(__file__).parent
    source = "".join((here / name).read_text() for name in (
        "test_payment_store.py", "test_payment_store_refunds.py", "test_payment_store_keys_queue.py",
        "test_payment_store_holds.py", "test_payment_store_processors.py"))
    operations = [name for name in vars(PaymentStore) if not name.startswith("_")]
    assert operations and [name for name in operations if f"store.{name}(" not in source] == []
