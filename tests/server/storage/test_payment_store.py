"""The store's contract (storage/port.py): every ``PaymentStore`` operation on SQLite and on
PostgreSQL (``gw`` runs each test on both), judged by what it returns and by the rows it
leaves behind. How PostgreSQL's one-statement forms compare with the general form:
test_payment_store_pg_forms.py."""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.http.idempotency import IdempotencyScope
from paygate_server.intents.schemas import CreateIntent, render_intent
from paygate_server.intents.service import new_intent
from paygate_server.refunds.schemas import render_refund
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.port import (
    AnswerSpec,
    Attempt,
    AttemptInFlight,
    ExistingKey,
    IntentMissing,
    IntentNotInStatus,
    NewAttempt,
    NewRefund,
    Outcome,
    OverRefund,
    PaymentStore,
    Row,
    TokenSpent,
    TooManyFailures,
)
from paygate_server.storage.statements import Sql, fetch_all
from tests.server.checkout.helpers import resolved_card, vault_row
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings

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

    async def intent(self, amount: int = 1999) -> dict[str, Any]:
        row, _ = new_intent(self.merchant_id, CreateIntent(amount, "USD", {"name": "Mug"}, None, {}))
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


@pytest.fixture
async def shop(gw: InProcessGateway) -> Shop:
    return await new_shop(gw)


@pytest.fixture
async def lone(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """A merchant on a database of its own: the queue, the keys and the day's records hold
    only this test's rows."""
    async with running_gateway(make_settings(fresh_database_url, tmp_path / "lone")) as g:
        yield await new_shop(g)


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
    found = await shop.store.find_key(shop.merchant_id, scope.key)
    assert found is not None and (found.state, found.response_status) == ("done", 201)
    assert found.response_body is not None and scope.open(found.response_body) == b'{"first":1}'

    again, _ = new_intent(shop.merchant_id, CreateIntent(500, "EUR", {"name": "Cup"}, None, {}))
    existing = await shop.store.create_intent(again, scope.claim, b'{"again":1}')
    assert isinstance(existing, ExistingKey)
    assert (existing.request_hash, existing.state, existing.response_status) == (scope.request_hash, "done", 201)
    assert existing.response_body is not None and scope.open(existing.response_body) == b'{"first":1}'
    assert await shop.store.get_intent(shop.merchant_id, again["id"]) is None  # nothing created
    assert await shop.current(first["id"]) == first


async def test_get_intent_by_client_secret_hash(shop: Shop) -> None:
    row = await shop.intent()
    found = await shop.store.get_intent_by_client_secret_hash(row["client_secret_hash"])
    assert found is not None and dict(found) == row
    assert await shop.store.get_intent_by_client_secret_hash("0" * 64) is None


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
    assert await store.find_key(mid, refused.key) is None


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
    assert await store.find_key(shop.merchant_id, fresh.key) is None  # no claim kept


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
    assert await shop.store.find_key(shop.merchant_id, scope.key) is None


async def test_begin_with_a_key_in_progress_or_abandoned(shop: Shop) -> None:
    store = shop.store
    first, second = await shop.intent(), await shop.intent()
    scope = shop.scope("process-1")
    await shop.begin(first["id"], claim=scope.claim)
    claimed = await store.find_key(shop.merchant_id, scope.key)
    assert claimed is not None and claimed.state == "in_progress"

    existing = await store.begin_attempt(shop.new_attempt(second["id"]), scope.claim)
    assert existing == claimed  # still running: the endpoint answers 409
    assert await shop.unchanged(second["id"]) == {"intent": second, "attempts": [], "checks": []}

    # Abandoned (its lock is older than ``stale_before``): the claim is taken over.
    abandoned = dataclasses.replace(scope.claim, stale_before=now_us() + MINUTE_US)
    row, attempt = await shop.begin(second["id"], claim=abandoned)
    assert row["status"] == "in_progress" and [a["id"] for a in await shop.attempts(second["id"])] == \
        [attempt.transaction_id]
    taken = await store.find_key(shop.merchant_id, scope.key)
    assert taken is not None and taken.state == "in_progress" and taken.locked_at > claimed.locked_at


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
    assert (await shop.store.find_key(shop.merchant_id, scope.key)).state == "in_progress"  # type: ignore[union-attr]

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


# --- refunds ---------------------------------------------------------------------------


def new_refund(shop: Shop, intent_id: str, amount: int | None) -> NewRefund:
    return NewRefund(shop.merchant_id, intent_id, amount, "requested_by_customer", MINUTE_US)


async def test_full_refund(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    refund = await store.reserve_refund(new_refund(shop, charge.intent_id, None), None)
    assert not isinstance(refund, ExistingKey)
    assert (refund["amount"], refund["currency"], refund["status"], refund["transaction_id"],
            refund["charge_reference"]) == (1999, "USD", "pending", charge.transaction_id, charge.reference)
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 1999
    [check] = [c for c in await shop.checks(charge.intent_id) if c["kind"] == "refund"]
    assert check["object_id"] == refund["id"]
    stored = await store.get_refund(refund["id"])
    assert stored is not None and {k: v for k, v in refund.items() if k != "charge_reference"} == dict(stored)
    for_check = await store.refund_for_check(refund["id"])
    assert for_check is not None and for_check["charge_reference"] == charge.reference
    with pytest.raises(OverRefund) as over:
        await store.reserve_refund(new_refund(shop, charge.intent_id, 1), None)
    assert over.value.remaining == 0

    settled = await store.settle_refund(refund["id"], REFUNDED)
    assert settled is not None and settled["status"] == "succeeded" and await shop.checks(charge.intent_id) == []
    late = await store.settle_refund(refund["id"], REFUSED)  # settled once: returned as it is
    assert late is not None and dict(late) == dict(settled)
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 1999


async def test_partial_refunds_and_a_refused_one_releases_its_reservation(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    part = await store.reserve_refund(new_refund(shop, charge.intent_id, 500), None)
    assert not isinstance(part, ExistingKey) and part["amount"] == 500
    for too_much in (1500, 0):
        with pytest.raises(OverRefund) as over:
            await store.reserve_refund(new_refund(shop, charge.intent_id, too_much), None)
        assert over.value.remaining == 1499
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 500

    refused = await store.settle_refund(part["id"], REFUSED)
    assert refused is not None and (refused["status"], refused["error_code"]) == ("failed", "refund_refused")
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 0
    assert await shop.checks(charge.intent_id) == []
    rest = await store.reserve_refund(new_refund(shop, charge.intent_id, None), None)
    assert not isinstance(rest, ExistingKey) and rest["amount"] == 1999


async def test_refund_unknown_keeps_its_check(shop: Shop) -> None:
    charge = await shop.paid()
    refund = await shop.store.reserve_refund(new_refund(shop, charge.intent_id, 700), None)
    assert not isinstance(refund, ExistingKey)
    due = now_us() + 5 * MINUTE_US
    row = await shop.store.settle_refund(refund["id"], unknown(due, 1))
    assert row is not None and row["status"] == "unknown"
    [check] = await shop.checks(charge.intent_id)
    assert (check["kind"], check["due_at"], check["checks"], check["last_result"]) == ("refund", due, 1, "timeout")
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 700  # still reserved
    row = await shop.store.settle_refund(refund["id"], REFUNDED)
    assert row is not None and row["status"] == "succeeded" and await shop.checks(charge.intent_id) == []


async def test_an_unknown_refund_outcome_racing_a_settle_leaves_no_check_behind(shop: Shop) -> None:
    refunds = []
    for _ in range(10):
        reserved = await shop.store.reserve_refund(new_refund(shop, (await shop.paid()).intent_id, None), None)
        assert not isinstance(reserved, ExistingKey)
        refunds.append(reserved)
    await asyncio.gather(*(shop.store.settle_refund(refund["id"], outcome) for refund in refunds
                           for outcome in (unknown(now_us() + MINUTE_US, 1), REFUNDED)))
    for refund in refunds:
        assert (await shop.store.get_refund(refund["id"]))["status"] == "succeeded"  # type: ignore[index]
        assert await shop.checks(refund["intent_id"]) == []

async def test_refund_with_a_key_stores_its_answer(shop: Shop) -> None:
    store = shop.store
    charge = await shop.paid()
    scope = shop.scope("refund-1", "/api/v1/payment/refund")
    refund = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert not isinstance(refund, ExistingKey)
    assert (await store.find_key(shop.merchant_id, scope.key)).state == "in_progress"  # type: ignore[union-attr]
    row = await store.settle_refund(refund["id"], REFUNDED, AnswerSpec(scope.claim, render_refund_answer))
    assert row is not None
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 200 and scope.open(stored[1]) == render_refund_answer(row)
    again = await store.reserve_refund(new_refund(shop, charge.intent_id, 300), scope.claim)
    assert isinstance(again, ExistingKey) and again.state == "done"
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 300  # reserved once


async def test_refund_refusals(shop: Shop) -> None:
    store = shop.store
    created = await shop.intent()
    scope = shop.scope("refund-refused")
    with pytest.raises(IntentMissing):
        await store.reserve_refund(new_refund(shop, "pi_missing", None), scope.claim)
    with pytest.raises(IntentNotInStatus) as refused:
        await store.reserve_refund(new_refund(shop, created["id"], None), scope.claim)
    assert refused.value.status == "created"
    charge = await shop.paid()
    with pytest.raises(IntentMissing):
        await store.reserve_refund(dataclasses.replace(new_refund(shop, charge.intent_id, None),
                                                       merchant_id="mer_other"), None)
    assert await store.find_key(shop.merchant_id, scope.key) is None
    assert (await shop.current(charge.intent_id))["amount_refunded"] == 0
    assert await store.settle_refund("re_missing", REFUNDED) is None
    assert await store.get_refund("re_missing") is None
    assert await store.refund_for_check("re_missing") is None


# --- idempotency keys ------------------------------------------------------------------


async def test_store_answer_first_writer_wins(shop: Shop) -> None:
    store = shop.store
    scope = shop.scope("answer")
    assert await store.find_key(shop.merchant_id, scope.key) is None
    assert await store.stored_answer(scope.claim) is None
    assert await store.store_answer(scope.claim, 402, b'{"first":1}') is True
    assert await store.store_answer(scope.claim, 200, b'{"second":1}') is False
    found = await store.find_key(shop.merchant_id, scope.key)
    assert found is not None and (found.request_hash, found.state, found.response_status) == \
        (scope.request_hash, "done", 402)
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 402 and scope.open(stored[1]) == b'{"first":1}'
    assert stored[1] == found.response_body != b'{"first":1}'  # stored sealed


async def test_store_answer_completes_a_claim_and_release_drops_one(shop: Shop) -> None:
    store = shop.store
    answered, released = shop.scope("claimed"), shop.scope("released")
    await shop.begin((await shop.intent())["id"], claim=answered.claim)
    await shop.begin((await shop.intent())["id"], claim=released.claim)
    assert await store.stored_answer(answered.claim) is None  # in progress: nothing to replay
    assert await store.store_answer(answered.claim, 200, b"{}") is True
    assert await store.stored_answer(answered.claim) is not None

    await store.release_key(released.claim)
    assert await store.find_key(shop.merchant_id, released.key) is None
    await store.release_key(answered.claim)  # an answered key stays
    assert (await store.find_key(shop.merchant_id, answered.key)).state == "done"  # type: ignore[union-attr]


async def test_prune_keys_drops_answered_keys_only(lone: Shop) -> None:
    store = lone.store
    done, running = lone.scope("done"), lone.scope("running")
    assert await store.store_answer(done.claim, 200, b"{}")
    await lone.begin((await lone.intent())["id"], claim=running.claim)
    assert await store.prune_keys(0) == 0
    assert await store.prune_keys(now_us() + 1) == 1
    assert await store.find_key(lone.merchant_id, done.key) is None
    assert await store.find_key(lone.merchant_id, running.key) is not None


async def test_change_with_key(shop: Shop) -> None:
    store = shop.store
    ran: list[object] = []

    async def change(conn: Any) -> tuple[int, bytes]:
        ran.append(conn)
        return 201, b'{"made":1}'

    assert await store.change_with_key(None, change) == (201, b'{"made":1}')
    scope = shop.scope("webhook", "/api/v1/webhook-endpoints")
    assert await store.change_with_key(scope.claim, change) == (201, b'{"made":1}')
    stored = await store.stored_answer(scope.claim)
    assert stored is not None and stored[0] == 201 and scope.open(stored[1]) == b'{"made":1}'
    again = await store.change_with_key(scope.claim, change)
    assert isinstance(again, ExistingKey) and again.state == "done" and len(ran) == 2

    async def failing(conn: Any) -> tuple[int, bytes]:
        raise RuntimeError("the change failed")

    broken = shop.scope("broken")
    with pytest.raises(RuntimeError):
        await store.change_with_key(broken.claim, failing)
    assert await store.find_key(shop.merchant_id, broken.key) is None  # the claim went with the change


# --- the reconciler's queue and the settlement report ----------------------------------


async def test_due_checks_and_next_check_due(lone: Shop) -> None:
    store = lone.store
    assert await store.next_check_due() is None and await store.all_checks() == []
    _, later = await lone.begin((await lone.intent())["id"])
    _, overdue = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(overdue, unknown(1000, 1))
    now = now_us()
    assert await store.next_check_due() == 1000
    [due] = await store.due_checks(now, 10)
    assert (due.kind, due.object_id, due.intent_id, due.merchant_id, due.due_at, due.checks, due.last_result) == \
        ("charge", overdue.transaction_id, overdue.intent_id, lone.merchant_id, 1000, 1, "timeout")
    both = await store.due_checks(now + 2 * MINUTE_US, 10)
    assert [c.object_id for c in both] == [overdue.transaction_id, later.transaction_id]
    assert [c.object_id for c in await store.due_checks(now + 2 * MINUTE_US, 1)] == [overdue.transaction_id]
    assert [c.object_id for c in await store.all_checks()] == [later.transaction_id, overdue.transaction_id]

    refund = await store.reserve_refund(new_refund(lone, (await lone.paid()).intent_id, None), None)
    assert not isinstance(refund, ExistingKey)
    assert [(c.kind, c.object_id) for c in await store.all_checks()][-1] == ("refund", refund["id"])


async def test_lease_check_wins_once(lone: Shop) -> None:
    store = lone.store
    _, attempt = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(attempt, unknown(1000, 1))
    [check] = await store.due_checks(now_us(), 10)
    until = now_us() + MINUTE_US
    leased = await asyncio.gather(*(store.lease_check(check, until) for _ in range(10)))
    assert leased.count(True) == 1
    assert [c.due_at for c in await store.all_checks()] == [until]
    assert await store.due_checks(now_us(), 10) == []
    assert await store.lease_check(check, until + 1) is False  # the check moved on


async def test_settled_records(lone: Shop) -> None:
    store = lone.store
    start = now_us()
    paid = await lone.paid()
    _, declined = await lone.begin((await lone.intent())["id"])
    await store.settle_attempt(declined, DECLINED)
    refund = await store.reserve_refund(new_refund(lone, paid.intent_id, 100), None)
    assert not isinstance(refund, ExistingKey)
    await store.settle_refund(refund["id"], REFUNDED)
    end = now_us() + 1

    def refs(records: list[Row]) -> set[str]:
        return {r["reference"] for r in records}

    assert refs(await store.settled_records("charge", "simulator", [], start, end)) == {paid.reference}
    assert refs(await store.settled_records("charge", "simulator", [declined.reference], start, end)) == \
        {paid.reference, declined.reference}
    assert await store.settled_records("charge", "other", [], start, end) == []
    assert await store.settled_records("charge", "simulator", [], end, end + MINUTE_US) == []
    [record] = await store.settled_records("charge", "simulator", [], start, end)
    assert (record["id"], record["status"], record["amount"]) == (paid.transaction_id, "succeeded", 1999)
    assert refs(await store.settled_records("refund", "simulator", [], start, end)) == {refund["reference"]}
    assert await store.settled_records("refund", "other", [], start, end) == []


def test_every_operation_of_the_port_is_covered() -> None:
    """A new operation on the port needs its contract test here."""
    source = Path(__file__).read_text()
    operations = [name for name in vars(PaymentStore) if not name.startswith("_")]
    assert operations and [name for name in operations if f"store.{name}(" not in source] == []
