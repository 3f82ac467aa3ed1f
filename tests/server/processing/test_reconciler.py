"""The reconciler against a scripted processor: outcomes applied once, unknowns kept and
listed, never-received attempts failed only after the safety window; settlement reports."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

import paygate
from paygate_server.processing.connectors import (
    ChargeOutcome,
    ChargeResult,
    RefundResult,
    SettlementRecord,
)
from paygate_server.processing.reconciler import Reconciler, list_unresolved
from paygate_server.processing.service import ProcessingService, charge_outcome, follow_up_outcome
from paygate_server.processing.settle import refund_outcome
from paygate_server.processing.settlement import reconcile_settlement
from paygate_server.simulator.testing import TestCards, start_simulator
from paygate_server.storage.port import Attempt, ExistingKey, NewAttempt, NewRefund
from paygate_server.storage.schema import change_log, reconcile_queue, transactions
from tests.server.checkout.helpers import tokenize, vault_row
from tests.server.processing.scripted import ScriptedProcessor, process_body, scripted
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.clock import FakeClock, fake_clock
from tests.support.eventually import eventually
from tests.support.processes import gateway_env
from tests.support.signing import SignedClient


async def _start_unknown_payment(gw: InProcessGateway, processor: ScriptedProcessor,
                                 expect: str = "in_progress") -> tuple[SignedClient, str]:
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                               exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200 and r.json()["status"] == expect, r.text
    return shop, pid


async def _make_due(gw: InProcessGateway, pid: str) -> None:
    async with gw.gateway.db.write() as conn:
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(due_at=0))


async def _statuses(gw: InProcessGateway, pid: str) -> list[tuple[str, str]]:
    async with gw.gateway.db.read() as conn:
        rows = await conn.execute(select(change_log.c.entity, change_log.c.data)
                                  .where(change_log.c.intent_id == pid).order_by(change_log.c.intent_seq))
        return [(r.entity, json.loads(r.data)["status"]) for r in rows]


@pytest.fixture
async def lone_gw(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """A gateway on a database of its own, for the tests that count what a whole reconciler
    pass did: the session's database holds other tests' checks, which may be due (or, with
    a TTL of 0, holds to void) when the pass runs."""
    async with running_gateway(settings_for(fresh_database_url, tmp_path)) as g:
        yield g


async def test_unknown_outcome_is_settled_once_by_racing_reconcilers(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_delay_s=0.05)
    shop, pid = await _start_unknown_payment(gw, processor)
    await _make_due(gw, pid)
    settings = gw.gateway.settings
    a = Reconciler(gw.gateway.payments, processor, settings)  # type: ignore[arg-type]
    b = Reconciler(gw.gateway.payments, processor, settings)  # type: ignore[arg-type]
    await asyncio.gather(a.run_once(), b.run_once())
    # Counted for this payment only: the passes also take other tests' checks that are due
    # in the database the session shares.
    async with gw.gateway.db.read() as conn:
        reference = (await conn.execute(select(transactions.c.reference).where(
            transactions.c.intent_id == pid))).scalar_one()
    assert processor.looked_up.count(reference) == 1  # the lease kept the second one off the row
    final = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert final["status"] == "succeeded"
    history = await _statuses(gw, pid)
    assert history.count(("payment_intent", "succeeded")) == 1
    assert history.count(("transaction", "succeeded")) == 1
    assert await list_unresolved(gw.gateway.payments) == [] or all(i["paymentIntentId"] != pid for i in await list_unresolved(gw.gateway.payments))


async def test_check_now_asks_about_one_operation_before_it_is_due(lone_gw: InProcessGateway) -> None:
    gw = lone_gw
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN)
    shop, pid = await _start_unknown_payment(gw, processor)
    other_shop, other = await _start_unknown_payment(gw, processor)
    [txn] = [c.object_id for c in await gw.gateway.payments.all_checks() if c.intent_id == pid]
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    assert (await reconciler.run_once()).checked == 0  # neither is due yet
    assert await reconciler.check_now("refund", txn) is None  # the kind is part of what names it
    assert await reconciler.check_now("charge", txn) == "approved"
    assert processor.calls["lookup"] == 1
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "succeeded"
    assert await reconciler.check_now("charge", txn) is None  # settled: nothing to ask
    assert processor.calls["lookup"] == 1
    status = (await other_shop.get(f"/api/v1/payment/status?paymentIntentId={other}")).json()["status"]
    assert status == "in_progress"  # only the one asked about
    # Settled too, so that the queue (one per database) is left as it was found.
    [other_txn] = [c.object_id for c in await gw.gateway.payments.all_checks() if c.intent_id == other]
    assert await reconciler.check_now("charge", other_txn) == "approved"


async def test_apply_is_idempotent_even_without_the_lease(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN)
    _, pid = await _start_unknown_payment(gw, processor)
    async with gw.gateway.db.read() as conn:
        txn_id = (await conn.execute(select(transactions.c.id).where(transactions.c.intent_id == pid))).scalar_one()
    store = gw.gateway.payments
    txn = await store.attempt_for_check(txn_id)
    assert txn is not None
    attempt = Attempt(txn_id, txn["reference"], pid, txn["merchant_id"], txn["amount"], txn["currency"])
    approved = charge_outcome(ChargeResult("ref", ChargeOutcome.APPROVED, auth_code="X"), schedule=(1.0,))

    results = await asyncio.gather(*(store.settle_attempt(attempt, approved) for _ in range(10)))
    assert sum(row is not None for row, _ in results) == 1
    assert (await _statuses(gw, pid)).count(("payment_intent", "succeeded")) == 1


async def test_unclassifiable_answers_stay_unknown_and_are_listed(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_outcome=ChargeOutcome.UNKNOWN)
    shop, pid = await _start_unknown_payment(gw, processor)
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    for expected_checks in (1, 2, 3):
        await _make_due(gw, pid)
        report = await reconciler.run_once()
        assert report.still_unknown >= 1
        item = next(i for i in await list_unresolved(gw.gateway.payments) if i["paymentIntentId"] == pid)
        assert item["checks"] == expected_checks and item["lastResult"]
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"
    async with gw.gateway.db.read() as conn:
        row = (await conn.execute(select(reconcile_queue.c.due_at).where(reconcile_queue.c.intent_id == pid))).one()
    assert row.due_at > 0  # asked again later, on the back-off schedule
    # Never turned into "failed" by guesswork.
    assert ("transaction", "failed") not in await _statuses(gw, pid)


async def test_never_received_is_failed_only_after_the_safety_window(lone_gw: InProcessGateway) -> None:
    gw = lone_gw
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_outcome=ChargeOutcome.NOT_FOUND)
    shop, pid = await _start_unknown_payment(gw, processor)
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    await _make_due(gw, pid)
    assert (await reconciler.run_once()).outcomes == {"not_found_yet": 1}
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"
    # Older than the window (and the in-flight grace): now it is failed, and can be retried.
    async with gw.gateway.db.write() as conn:
        await conn.execute(text("UPDATE transactions SET created_at = created_at - 3600000000 WHERE intent_id = :p"), {"p": pid})
    await _make_due(gw, pid)
    assert (await reconciler.run_once()).outcomes == {"failed_never_received": 1}
    status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert status["status"] == "failed" and status["lastError"]["code"] == "processing_error"
    processor.charge_outcome = ChargeOutcome.APPROVED
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="5555555555554444",
                               exp_month=1, exp_year=2035, cvc="999")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.json()["status"] == "succeeded"


async def test_ten_failed_attempts_then_rate_limited(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.DECLINED)
    shop, pid = await _start_unknown_payment(gw, ScriptedProcessor(charge_outcome=ChargeOutcome.DECLINED), "failed")
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4000000000000002",
                               exp_month=12, exp_year=2034, cvc="123")
    body = {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}}
    for _ in range(9):  # the first decline happened in _start_unknown_payment
        assert (await shop.post("/api/v1/payment/process", body)).json()["status"] == "failed"
    r = await shop.post("/api/v1/payment/process", body)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"]
    assert processor.calls["charge"] == 9


async def test_settlement_mismatches(gw: InProcessGateway) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    shop = await gw.new_merchant()
    refs = {}
    for amount in (100, 200, 300, 400, 500):
        # 400 is declined here (our record: failed) yet settled by the processor.
        processor.charge_outcome = ChargeOutcome.DECLINED if amount == 400 else ChargeOutcome.APPROVED
        pid = (await shop.create_intent(amount=amount))["paymentIntentId"]
        jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                                   exp_month=12, exp_year=2034, cvc="123")
        r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                        "paymentDetails": {"encryptedCard": jwe}})
        assert r.json()["status"] == ("failed" if amount == 400 else "succeeded"), r.text
        async with gw.gateway.db.read() as conn:
            refs[amount] = (await conn.execute(select(transactions.c.reference).where(transactions.c.intent_id == pid))).scalar_one()
    record = lambda ref, amount: SettlementRecord("charge", ref, None, None, amount, "USD")  # noqa: E731
    processor.settled = [record(refs[100], 100), record(refs[200], 250), record("ref_unknown0000000000", 999),
                         record(refs[400], 400), SettlementRecord("charge", refs[500], None, None, 500, "EUR")]
    mismatches, counts = await reconcile_settlement(gw.gateway.payments, processor, dt.datetime.now(dt.UTC).date())  # type: ignore[arg-type]
    problems = {(m.problem, m.reference) for m in mismatches}
    # SPEC §7: every mismatch — missing on either side, amount or status differs.
    assert ("amount_differs", refs[200]) in problems
    assert ("missing_in_gateway", "ref_unknown0000000000") in problems
    assert ("missing_at_processor", refs[300]) in problems
    assert ("status_differs", refs[400]) in problems
    assert ("amount_differs", refs[500]) in problems  # the currency is part of the amount
    assert not any(m.reference == refs[100] for m in mismatches)
    assert counts["processorRecords"] == 5


async def test_a_settlement_report_of_more_records_than_a_statement_binds(lone_gw: InProcessGateway) -> None:
    """A busy day's report (more references than one statement may bind: asyncpg takes at
    most 32,767 parameters) is compared whole: once an InterfaceError on PostgreSQL. On a
    database of its own: every success of the day at the processor is compared."""
    gw = lone_gw
    processor = scripted(gw)
    shop = await gw.new_merchant()
    ours = []
    for amount in (100, 200):
        pid = (await shop.create_intent(amount=amount))["paymentIntentId"]
        assert (await shop.post("/api/v1/payment/process", process_body(gw, pid))).json()["status"] == "succeeded"
        async with gw.gateway.db.read() as conn:
            ours.append((await conn.execute(select(transactions.c.reference)
                                            .where(transactions.c.intent_id == pid))).scalar_one())
    strangers = [f"ref_busyday{i:014d}" for i in range(40_000)]
    # Ours come last, past every slice but the final one; the second with another amount.
    processor.settled = [*(SettlementRecord("charge", ref, None, None, 999, "USD") for ref in strangers),
                         SettlementRecord("charge", ours[0], None, None, 100, "USD"),
                         SettlementRecord("charge", ours[1], None, None, 250, "USD")]
    mismatches, counts = await reconcile_settlement(gw.gateway.payments, processor,  # type: ignore[arg-type]
                                                    dt.datetime.now(dt.UTC).date(), processor.name)
    assert counts["processorRecords"] == 40_002
    problems = Counter(m.problem for m in mismatches)
    assert problems == {"missing_in_gateway": 40_000, "amount_differs": 1}
    assert [m.reference for m in mismatches if m.problem == "amount_differs"] == [ours[1]]


def test_reconcile_cli_lists_and_settlement_exit_code(fresh_database_url: str, tmp_path: Any) -> None:
    database_url = fresh_database_url
    from tests.e2e.conftest import running_stack
    from tests.server.test_cli import paygate as run_cli
    from tests.support.processes import gateway_env

    with running_stack(database_url, tmp_path / "stack") as stack:
        env = gateway_env(database_url, tmp_path, PAYGATE_PROCESSOR_URL=stack.simulator.base_url)
        r = run_cli("reconcile", "--once", "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert set(json.loads(r.stdout)) == {"checked", "settled", "outcomes", "unresolved", "lateOutcomes"}
        today = dt.datetime.now(dt.UTC).date().isoformat()
        r = run_cli("reconcile", "settlement", "--date", today, env=env)
        assert r.returncode == 0 and "0 mismatches" in r.stdout, r.stdout + r.stderr
        r = run_cli("reconcile", "settlement", "--date", "yesterday", env=env)
        assert r.returncode == 2 and "YYYY-MM-DD" in r.stderr
        httpx.post(f"{stack.simulator.base_url}/v1/charges", json={
            "reference": "ref_outside000000000000", "paymentIntentId": "pi_outside", "merchantId": "mer_x",
            "amount": 500, "currency": "USD",
            "card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2034, "cvc": "123"}}).raise_for_status()
        r = run_cli("reconcile", "settlement", "--date", today, "--json", env=env)
        assert r.returncode == 1
        items = json.loads(r.stdout)["items"]
        assert [m["problem"] for m in items] == ["missing_in_gateway"]
        # Field names camelCase, as every other --json and the API (SPEC §2).
        assert items[0] == {"kind": "charge", "problem": "missing_in_gateway", "reference": "ref_outside000000000000",
                            "paymentIntentId": "pi_outside", "gateway": None,
                            "processor": {"amount": 500, "currency": "USD", "merchantId": "mer_x"}}


def test_rotate_card_key_keeps_old_kid_decrypting(database_url: str, tmp_path: Any) -> None:
    pytest.importorskip("jwcrypto")
    from tests.e2e.conftest import running_stack
    from tests.server.test_cli import paygate as run_cli
    from tests.support.processes import gateway_env

    with running_stack(database_url, tmp_path / "stack") as stack:
        creds = stack.merchant()
        old_jwks = httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()
        r = run_cli("keys", "rotate-card-key", "--json", env=gateway_env(database_url, tmp_path))
        assert r.returncode == 0, r.stderr
        new_kid = json.loads(r.stdout)["kid"]
        assert new_kid != old_jwks["keys"][0]["kid"]

        async def pay(jwks: dict[str, Any]) -> str:
            async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
                shop = SignedClient(http, creds)
                pid = (await shop.create_intent())["paymentIntentId"]
                jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
                r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                                "paymentDetails": {"encryptedCard": jwe}})
                return r.json()["status"]

        assert asyncio.run(pay(old_jwks)) == "succeeded"  # a page opened before the rotation

        async def new_public_jwk() -> dict[str, Any]:
            from paygate_server.storage import create_database
            from paygate_server.storage.schema import sealed_keys

            db = create_database(database_url)
            try:
                async with db.read() as conn:
                    row = (await conn.execute(select(sealed_keys.c.public_jwk).where(sealed_keys.c.kid == new_kid))).one()
            finally:
                await db.dispose()
            return {"keys": [json.loads(row.public_jwk)]}

        # The running gateway has not reloaded yet: an unknown kid makes it look once.
        assert asyncio.run(pay(asyncio.run(new_public_jwk()))) == "succeeded"


# --- The not-found deadline, on a fake clock ------------------------------------------------

WINDOW_S = 20.0
SCHEDULE_S = (5.0, 600.0)


@pytest.fixture
async def clocked(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[tuple[InProcessGateway, FakeClock]]:
    """A gateway on its own database (a reconciler pass sees only this test's rows) and a
    fake clock; the window (20 s) is past the in-flight grace (16 s with the defaults)."""
    settings = settings_for(fresh_database_url, tmp_path, reconcile_schedule_s=SCHEDULE_S,
                             reconcile_not_found_after_s=WINDOW_S)
    assert settings.not_found_fail_after_s == WINDOW_S
    with fake_clock() as clock:
        async with running_gateway(settings) as g:
            yield g, clock


async def _pay_with_token(gw: InProcessGateway, processor: ScriptedProcessor) -> tuple[SignedClient, str]:
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    shop = await gw.new_merchant()
    intent = await shop.create_intent()
    token = (await tokenize(gw, intent["clientSecret"])).json()["token"]
    pid = intent["paymentIntentId"]
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"token": token}})
    assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text
    return shop, pid


async def _next_due_s(gw: InProcessGateway, clock: FakeClock) -> float | None:
    async with gw.gateway.db.read() as conn:
        due = (await conn.execute(select(reconcile_queue.c.due_at))).scalar()
    return None if due is None else (due - clock.start_us) / 1_000_000


async def _run_reconciler(gw: InProcessGateway, clock: FakeClock, processor: ScriptedProcessor,
                          until_s: float) -> list[tuple[float, str]]:
    """What ``run_forever`` does, without its waiting: move the clock to the next due check,
    run a pass; until the queue is empty or the next check is past ``until_s``."""
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    checks: list[tuple[float, str]] = []
    while (due_s := await _next_due_s(gw, clock)) is not None and due_s <= until_s:
        clock.set_elapsed(max(due_s, clock.elapsed_s))
        report = await reconciler.run_once()
        checks += [(clock.elapsed_s, outcome) for outcome, n in report.outcomes.items() for _ in range(n)]
    return checks


async def test_a_charge_never_received_is_failed_at_the_window_not_the_next_back_off_step(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    gw, clock = clocked
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_outcome=ChargeOutcome.NOT_FOUND)
    shop, pid = await _pay_with_token(gw, processor)  # the answer was lost; unknown at 0 s
    checks = await _run_reconciler(gw, clock, processor, until_s=3600)
    # First check on the back-off (5 s ± 20 %): not found yet. The next back-off step is
    # 600 s; the deadline (20 s) comes first, and at the deadline the charge is failed.
    assert [outcome for _, outcome in checks] == ["not_found_yet", "failed_never_received"], checks
    assert 4.0 <= checks[0][0] <= 6.0
    assert checks[1][0] == WINDOW_S
    status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()
    assert status["status"] == "failed" and status["lastError"]["code"] == "processing_error"
    assert (await vault_row(gw, intent_id=pid)).cvc_sealed is None  # the outcome is known: the CVC goes


async def test_a_pending_charge_never_received_is_failed_at_the_window(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """The gateway died during the call: the reconciler's first check is at the in-flight
    grace (16 s), the next at the window (20 s), not 600 s later."""
    gw, clock = clocked
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_outcome=ChargeOutcome.NOT_FOUND)
    _, pid = await _pay_with_token(gw, processor)
    async with gw.gateway.db.write() as conn:  # as if the request never recorded its answer
        await conn.execute(update(transactions).where(transactions.c.intent_id == pid).values(status="pending"))
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(
            due_at=clock.start_us + round(gw.gateway.settings.in_flight_grace_s * 1_000_000), checks=0))
    checks = await _run_reconciler(gw, clock, processor, until_s=3600)
    assert checks == [(gw.gateway.settings.in_flight_grace_s, "not_found_yet"), (WINDOW_S, "failed_never_received")]


async def test_a_found_but_unknown_charge_keeps_the_back_off(clocked: tuple[InProcessGateway, FakeClock]) -> None:
    gw, clock = clocked
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.UNKNOWN, lookup_outcome=ChargeOutcome.UNKNOWN)
    shop, pid = await _pay_with_token(gw, processor)
    checks = await _run_reconciler(gw, clock, processor, until_s=60)
    assert [outcome for _, outcome in checks] == ["unknown"]
    next_s = await _next_due_s(gw, clock)
    assert next_s is not None and 0.8 * SCHEDULE_S[1] <= next_s - checks[0][0] <= 1.2 * SCHEDULE_S[1]
    assert (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"] == "in_progress"


async def _held(gw: InProcessGateway, processor: ScriptedProcessor) -> tuple[SignedClient, str]:
    """A manual-capture intent authorized by ``processor`` (requires_capture)."""
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    shop = await gw.new_merchant()
    pid = (await shop.create_intent(captureMethod="manual"))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                               exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200 and r.json()["status"] == "requires_capture", r.text
    return shop, pid


async def _capture_unanswered(gw: InProcessGateway) -> tuple[ScriptedProcessor, SignedClient, str]:
    """A held intent whose capture of 1500 got no answer (in_progress, the reconciler's)."""
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED, follow_up_outcome=ChargeOutcome.UNKNOWN)
    shop, pid = await _held(gw, processor)
    r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 1500})
    assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text
    return processor, shop, pid


async def test_a_capture_the_processor_never_received_is_sent_again_with_its_reference(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """Once the request that sent it can no longer be on its way (the in-flight grace), not
    before: until then "not found" may only mean "not arrived yet"."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    [(_, reference, authorization)] = processor.sent
    processor.follow_up_outcome = ChargeOutcome.APPROVED  # the processor never saw it; now it answers
    checks = await _run_reconciler(gw, clock, processor, until_s=3600)
    grace = gw.gateway.settings.in_flight_grace_s
    assert [outcome for _, outcome in checks] == ["capture_not_found_yet", "capture_sent_approved"], checks
    assert checks[0][0] < grace and checks[1][0] == grace
    # The same reference, once more, and only once.
    assert [s for s in processor.sent if s[1] == reference] == [("capture", reference, authorization)] * 2
    got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (got["status"], got["amountReceived"]) == ("succeeded", 1500)
    async with gw.gateway.db.read() as conn:  # settled: off the queue
        assert (await conn.execute(select(reconcile_queue).where(reconcile_queue.c.intent_id == pid))).all() == []


async def test_check_now_looks_up_but_never_sends(clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """An operator's "ask now" may run while a pass works the same capture (the pass's lease
    looks like a later due time): a resend of its own could be refused while the pass's
    send is still on its way. So it only looks up, and applies only what settles."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    clock.set_elapsed(gw.gateway.settings.in_flight_grace_s + 1)  # past the grace: a pass would resend
    [check] = [c for c in await gw.gateway.payments.all_checks() if c.intent_id == pid]
    reconciler = Reconciler(gw.gateway.payments, processor, gw.gateway.settings)  # type: ignore[arg-type]
    assert await reconciler.check_now(check.kind, check.object_id) == "capture_not_found"
    assert len(processor.sent) == 1  # the request's own capture, nothing more
    assert await gw.gateway.payments.check_of(check.kind, check.object_id) == check  # left as scheduled
    processor.follow_up_lookup = ChargeOutcome.APPROVED  # the processor has it now
    assert await reconciler.check_now(check.kind, check.object_id) == "capture_approved"
    got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (got["status"], got["amountReceived"]) == ("succeeded", 1500)
    assert len(processor.sent) == 1


async def test_a_resend_without_an_answer_is_not_followed_by_another_within_its_grace(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """Regression (found by the simulation, docs/reliability.md): a capture whose answer was
    lost was sent again at its first check; that resend's "nothing done" settled it as
    refused — and the first request, still on its way, then captured at the processor. A
    resend comes only when no earlier send can still arrive, so "nothing done" is the truth."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    grace = gw.gateway.settings.in_flight_grace_s
    first = await _run_reconciler(gw, clock, processor, until_s=grace)  # the resend's answer is lost too
    assert [outcome for _, outcome in first] == ["capture_not_found_yet", "capture_sent_unknown"], first
    processor.follow_up_outcome = ChargeOutcome.FAILED
    later = await _run_reconciler(gw, clock, processor, until_s=3600)
    assert [outcome for _, outcome in later] == ["capture_sent_failed"], later
    assert later[0][0] >= first[1][0] + grace  # not while the first resend may still be on its way
    assert len(processor.sent) == 3
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "requires_capture"


async def test_a_not_found_answer_counts_from_when_it_was_asked_not_when_it_came_back(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """Regression (the long simulation run, seed 84555): a capture's look-up asked inside the
    in-flight grace was answered "not found" after it; the reconciler sent the capture again,
    that resend was refused ("nothing done"), and the capture was settled failed — while the
    first request, arriving meanwhile, captured at the processor. The answer is the
    processor's state when the look-up reached it: inside the grace it proves nothing."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    grace = gw.gateway.settings.in_flight_grace_s
    # The first look-up is asked before the grace ends, answered after it: "not found" (the
    # first request had not arrived when it was asked). By the next one, it has.
    answers = iter([ChargeOutcome.NOT_FOUND, ChargeOutcome.APPROVED])

    def slow_answer() -> None:
        clock.set_elapsed(max(clock.elapsed_s, grace + 1))
        processor.follow_up_lookup = next(answers)

    processor.on_follow_up_lookup = slow_answer
    processor.follow_up_outcome = ChargeOutcome.FAILED  # a resend would be refused ("nothing done")
    checks = await _run_reconciler(gw, clock, processor, until_s=3600)
    assert [outcome for _, outcome in checks] == ["capture_not_found_yet", "capture_approved"], checks
    assert len(processor.sent) == 1  # never sent again
    got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (got["status"], got["amountReceived"]) == ("succeeded", 1500)


async def test_the_requests_late_no_answer_does_not_bring_a_resend_forward(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """Regression: the request's own "no answer" (its capture timed out), written only after
    the reconciler had taken over — its write held up by a busy database past the in-flight
    grace — moved the check to the first back-off step, though the reconciler had just sent
    the capture again (its answer lost too). The reconciler then sent it a third time while
    that resend could still be on its way, and a "nothing done" to the third settled the
    capture as refused. Once a check has been made, the request's "no answer" moves nothing."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    grace = gw.gateway.settings.in_flight_grace_s
    [check] = [c for c in await gw.gateway.payments.all_checks() if c.intent_id == pid]
    async with gw.gateway.db.write() as conn:  # as if the request has not written its answer yet
        await conn.execute(update(transactions).where(transactions.c.id == check.object_id).values(status="pending"))
        await conn.execute(update(reconcile_queue).where(reconcile_queue.c.intent_id == pid).values(
            due_at=clock.start_us + round(grace * 1_000_000), checks=0))
    first = await _run_reconciler(gw, clock, processor, until_s=grace)
    assert first == [(grace, "capture_sent_unknown")], first  # sent again; its answer lost
    # Now the request's own answer is written: "no answer" (what _hold_operation writes).
    row = await gw.gateway.payments.attempt_for_check(check.object_id)
    assert row is not None
    lost = ChargeResult(row["reference"], ChargeOutcome.UNKNOWN, message="timeout: outcome unknown")
    await gw.gateway.payments.settle_follow_up(Attempt.of(row), follow_up_outcome(
        "capture", lost, schedule=gw.gateway.settings.reconcile_schedule_s))
    processor.follow_up_outcome = ChargeOutcome.FAILED  # a resend now would be refused ("nothing done")
    later = await _run_reconciler(gw, clock, processor, until_s=3600)
    assert later and later[0][0] >= first[0][0] + grace, later  # not while the resend may be on its way


async def test_the_requests_late_no_answer_does_not_bring_a_refunds_resend_forward(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """The same for a refund: sent again at the grace (its answer lost), then the request's
    late "no answer"; the next resend waits out the first resend's grace."""
    gw, clock = clocked
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED, refund_answer=ChargeOutcome.UNKNOWN)
    shop, pid = await _start_unknown_payment(gw, processor, expect="succeeded")
    grace = gw.gateway.settings.in_flight_grace_s
    # Reserved by a request still waiting for the processor's answer.
    refund = await gw.gateway.payments.reserve_refund(
        NewRefund(shop.creds.merchant_id, pid, 500, None, round(grace * 1_000_000)), None)
    assert not isinstance(refund, ExistingKey)
    first = await _run_reconciler(gw, clock, processor, until_s=grace)
    assert first == [(grace, "refund_sent_unknown")], first
    await gw.gateway.payments.settle_refund(refund["id"], refund_outcome(  # the request's answer, late
        RefundResult(refund["reference"], ChargeOutcome.UNKNOWN, "timeout"), schedule=SCHEDULE_S))
    processor.refund_answer = ChargeOutcome.FAILED  # a resend now would be refused ("nothing done")
    processor.refund_message = "charge_not_refundable: nothing done"
    later = await _run_reconciler(gw, clock, processor, until_s=3600)
    assert later and later[0][0] >= first[0][0] + grace, later
    assert [s[0] for s in processor.sent] == ["refund", "refund"]
    settled = await gw.gateway.payments.get_refund(refund["id"])  # refused: the reconciler kept why
    assert settled is not None and (settled["status"], settled["failure_reason"]) == ("failed", processor.refund_message)


async def test_holds_past_the_ttl_are_voided_by_the_reconciler(gw: InProcessGateway,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    shop, pid = await _held(gw, processor)
    async with gw.gateway.db.read() as conn:
        authorization = (await conn.execute(select(transactions.c.reference).where(
            transactions.c.intent_id == pid, transactions.c.kind == "authorization"))).scalar_one()

    def voids_of_this_hold() -> list[tuple[str, str, str]]:
        return [s for s in processor.sent if s[0] == "void" and s[2] == authorization]

    await Reconciler(gw.gateway.payments, processor, gw.gateway.settings).run_once()  # type: ignore[arg-type]
    assert voids_of_this_hold() == []  # 7 days by default: still held
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "requires_capture"

    expiring = dataclasses.replace(gw.gateway.settings, authorization_ttl_s=0.0)
    reconcilers = [Reconciler(gw.gateway.payments, processor, expiring) for _ in range(3)]  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="paygate.reconciler"):
        await asyncio.gather(*(r.run_once() for r in reconcilers))
    assert len(voids_of_this_hold()) == 1  # three reconcilers, one void
    # Each step says so once, in the log: the void begun, and the check that sent it.
    async with gw.gateway.db.read() as conn:
        void = (await conn.execute(select(transactions.c.id).where(
            transactions.c.intent_id == pid, transactions.c.kind == "void"))).scalar_one()
    assert [r.getMessage() for r in caplog.records if pid in r.getMessage()] == [
        f"hold of {pid} past PAYGATE_AUTHORIZATION_TTL_S: void begun",
        f"checked void {void} of {pid} at scripted (check 1): void_sent_approved"]
    got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (got["status"], got["cancellationReason"], got["amountCapturable"]) == ("canceled", "expired", 0)
    await reconcilers[0].run_once()
    assert len(voids_of_this_hold()) == 1


async def test_by_default_a_hold_is_kept_seven_days_and_voided_after(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """SPEC §4: PAYGATE_AUTHORIZATION_TTL_S defaults to 7 days. A second before, the hold
    stands; a second after, the reconciler voids it and the intent ends canceled, expired."""
    gw, clock = clocked
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED)
    shop, pid = await _held(gw, processor)

    async def a_pass() -> None:  # a new reconciler: one looks for expired holds once per sweep interval
        await Reconciler(gw.gateway.payments, processor, gw.gateway.settings).run_once()  # type: ignore[arg-type]

    week_s = 7 * 24 * 3600
    clock.set_elapsed(week_s - 1)
    await a_pass()
    assert [s for s in processor.sent if s[0] == "void"] == []
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "requires_capture"
    clock.set_elapsed(week_s + 1)
    await a_pass()
    assert len([s for s in processor.sent if s[0] == "void"]) == 1
    got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
    assert (got["status"], got["cancellationReason"], got["amountCapturable"]) == ("canceled", "expired", 0)


# --- A processor that cannot be asked (Adyen): sent again within its keys' lifetime --------

async def test_at_a_processor_that_cannot_be_asked_an_unanswered_capture_is_sent_again(
        clocked: tuple[InProcessGateway, FakeClock]) -> None:
    """Its look-ups say UNKNOWN, never "not found": before, a capture it never received
    waited for a notification forever. Sent again with the same reference once no earlier
    send can be on its way, within the window its keys answer with the first answer, and
    not after it."""
    gw, clock = clocked
    processor, shop, pid = await _capture_unanswered(gw)
    processor.resend_answers_s, processor.follow_up_lookup = 3600.0, ChargeOutcome.UNKNOWN
    [(_, reference, authorization)] = processor.sent
    grace = gw.gateway.settings.in_flight_grace_s
    checks = await _run_reconciler(gw, clock, processor, until_s=3600 + 2 * SCHEDULE_S[1])
    labels = [outcome for _, outcome in checks]
    assert labels[0] == "capture_unknown" and checks[0][0] < grace  # no resend inside the grace
    resends = [at for at, outcome in checks if outcome == "capture_sent_unknown"]
    assert resends and resends[0] >= grace and all(at < 3600 for at in resends)
    assert labels[-1] == "capture_unknown" and checks[-1][0] >= 3600  # past the window: asked only
    assert processor.sent == [("capture", reference, authorization)] * (1 + len(resends))  # one reference
    assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "in_progress"  # a notification settles it


async def test_at_a_processor_that_cannot_be_asked_a_hold_past_the_ttl_is_voided(lone_gw: InProcessGateway) -> None:
    """The hold-expiry void is begun by the reconciler and sent by its first check; where a
    look-up cannot say "not found" it was never sent at all."""
    gw = lone_gw
    processor = ScriptedProcessor(charge_outcome=ChargeOutcome.APPROVED, follow_up_lookup=ChargeOutcome.UNKNOWN,
                                  resend_answers_s=3600.0)
    await _held(gw, processor)
    expiring = dataclasses.replace(gw.gateway.settings, authorization_ttl_s=0.0)
    await Reconciler(gw.gateway.payments, processor, expiring).run_once()  # type: ignore[arg-type]
    assert [s[0] for s in processor.sent] == ["void"]
    processor.resend_answers_s = 0.0  # as before: looked up, never sent
    processor.sent.clear()
    await _held(gw, processor)
    await Reconciler(gw.gateway.payments, processor, expiring).run_once()  # type: ignore[arg-type]
    assert processor.sent == []


async def test_a_reconciler_without_the_accounts_never_asks_the_default_about_an_accounts_attempt(
        lone_gw: InProcessGateway) -> None:
    """An attempt routed to a processor account is asked about at that account only: a
    reconciler built without the accounts (as ``paygate reconcile`` once was) refuses it
    instead of asking the default processor, whose "not found" would fail a charge the
    account may have taken."""
    gw = lone_gw
    processor = ScriptedProcessor(lookup_outcome=ChargeOutcome.NOT_FOUND)
    gw.gateway.processing = ProcessingService(gw.gateway, processor)  # type: ignore[arg-type]
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    # An attempt recorded as routed to an account, due for checking at once.
    new = NewAttempt(shop.creds.merchant_id, pid, {"brand": "visa", "last4": "4242", "expMonth": 12,
                                                  "expYear": 2034}, None, None, "pa_elsewhere", 0, 10)
    begun = await gw.gateway.payments.begin_attempt(new, None)
    assert isinstance(begun, tuple)
    _, attempt = begun
    report = await Reconciler(gw.gateway.payments, processor, gw.gateway.settings).run_once()  # type: ignore[arg-type]
    assert processor.calls["lookup"] == 0 and report.settled == 0
    async with gw.gateway.db.read() as conn:
        status = (await conn.execute(select(transactions.c.status).where(
            transactions.c.id == attempt.transaction_id))).scalar_one()
    assert status == "pending"  # untouched: still the account's to answer


async def _pay_with_the_answer_lost(gw: InProcessGateway, shop: SignedClient) -> str:
    """A payment the simulator takes and whose answer it drops: in_progress until reconciled."""
    pid: str = (await shop.create_intent())["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=TestCards.DROPPED_ANSWER,
                               exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.json()["status"] == "in_progress", r.text
    return pid


async def _status(shop: SignedClient, pid: str) -> str:
    return str((await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")).json()["status"])


async def test_the_standalone_reconciler_lists_what_is_open_and_is_woken_by_changes(
        database_url: str, tmp_path: Path) -> None:
    """SPEC §7: the reconciler is event-driven (it consumes the change stream) with a
    periodic sweep as a safety net, and an unresolved outcome is surfaced (``paygate
    reconcile`` lists it) — the standalone ``paygate reconcile`` as much as the gateway's
    own. Its sweep here is an hour: a lost answer that happens while it waits is settled at
    its first back-off step only because the change woke it."""
    with start_simulator(tmp_path / "simulator") as simulator_url:
        # No background work in this gateway: the only reconciler is the standalone one.
        async with running_gateway(settings_for(database_url, tmp_path, processor_url=simulator_url)) as gw:
            shop = await gw.new_merchant()
            open_before = await _pay_with_the_answer_lost(gw, shop)
            env = {**os.environ, **gateway_env(
                database_url, tmp_path, PAYGATE_PROCESSOR_URL=simulator_url, PAYGATE_RECONCILE_SWEEP_INTERVAL_S="3600")}
            reconciler = subprocess.Popen([sys.executable, "-m", "paygate_server", "reconcile"], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                assert reconciler.stdout is not None
                listed: list[str] = []
                while not listed or not listed[-1].startswith("reconciler running"):
                    line = await asyncio.wait_for(asyncio.to_thread(reconciler.stdout.readline), 60)
                    assert line, f"paygate reconcile ended: {listed}"
                    listed.append(line)
                assert any(open_before in line for line in listed), listed
                # Settled when its check is due (the first pass saw it), then nothing is due.
                await eventually(lambda: _status(shop, open_before), until=lambda s: s == "succeeded")
                woken = await _pay_with_the_answer_lost(gw, shop)
                await eventually(lambda: _status(shop, woken), until=lambda s: s == "succeeded",
                                 what="the payment settled by the standalone reconciler, woken by the change")
            finally:
                reconciler.terminate()
                reconciler.wait(30)
            # --json: what it lists is one JSON object, as --once's (the log is on stderr).
            reconciler = subprocess.Popen([sys.executable, "-m", "paygate_server", "reconcile", "--json"], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                assert reconciler.stdout is not None
                line = await asyncio.wait_for(asyncio.to_thread(reconciler.stdout.readline), 60)
                listing = json.loads(line)  # the database may hold other tests' payments
                assert set(listing) == {"unresolved", "lateOutcomes"}
                assert not {open_before, woken} & {item["paymentIntentId"] for item in listing["unresolved"]}
            finally:
                reconciler.terminate()
                reconciler.wait(30)


async def test_the_gateways_reconciler_is_woken_by_changes(database_url: str, tmp_path: Path) -> None:
    """SPEC §7, the gateway's own reconciler: with an hour's sweep, a lost answer is settled
    at its first back-off step because the change woke the reconciler, not the sweep."""
    with start_simulator(tmp_path / "simulator") as simulator_url:
        settings = settings_for(database_url, tmp_path, processor_url=simulator_url, run_background=True,
                                reconcile_sweep_interval_s=3600.0)
        async with running_gateway(settings) as gw:
            shop = await gw.new_merchant()
            pid = await _pay_with_the_answer_lost(gw, shop)
            await eventually(lambda: _status(shop, pid), until=lambda s: s == "succeeded", what="the lost answer settled")
