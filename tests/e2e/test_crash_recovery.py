"""SIGKILL the gateway at each dangerous point of a payment — and of a capture, void or
refund of one — many times, and prove that after restart and reconciliation nothing is
charged (captured, voided, refunded) twice, lost, or left in flight.

Two gateway processes share the database, as in a multi-worker deployment: the *victim*
runs with ``PAYGATE_FAULT_POINT`` and kills itself (SIGKILL: no clean-up of any kind) at
that point of the first payment it handles, then is restarted; the *survivor* serves the
checks and runs the reconciler.

Rounds (kills) per point: 3 by default, 20 when the run selects the slow set (``-m slow``;
each database gets them, like every test). The test is marked ``slow`` so that ``-m slow``
picks it; it counts as a slow-set run when it would not have been selected without that
mark (see ``_rounds``); the count shows in the test id. ``PAYGATE_CRASH_ROUNDS`` overrides both.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import paygate
from paygate_server.procs import ServiceProcess, gateway_command
from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all
from tests.e2e.conftest import FAST_RECONCILE, Stack
from tests.support.eventually import eventually
from tests.support.processes import gateway_env
from tests.support.signing import SignedClient
from tests.support.slow_set import is_slow_run

ROUNDS, SLOW_ROUNDS = 3, 20
POINTS = ["after_attempt_commit", "during_processor_call", "after_processor_approved"]


def _rounds(config: pytest.Config, marks: set[str]) -> int:
    """20 rounds in the slow set (tests/support/slow_set.py), 3 otherwise (issue #16)."""
    if "PAYGATE_CRASH_ROUNDS" in os.environ:
        return int(os.environ["PAYGATE_CRASH_ROUNDS"])
    return SLOW_ROUNDS if is_slow_run(config, marks) else ROUNDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The round count is a parameter, so the test id says it (``[3-rounds-...]``)."""
    if "rounds" in metafunc.fixturenames:
        rounds = _rounds(metafunc.config, {m.name for m in metafunc.definition.iter_markers()})
        metafunc.parametrize("rounds", [rounds], ids=[f"{rounds}-rounds"])


@pytest.mark.slow
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_point_never_double_charges_or_loses(
        point: str, rounds: int, stack: Stack, tmp_path: Path) -> None:
    """On the module's stack (tests/e2e/conftest.py: one simulator and survivor per database,
    not one per test); each test pays for a merchant of its own and checks only its intents."""
    victim = _victim(stack, tmp_path, point)
    creds = stack.merchant()
    jwks = httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()
    intents: list[str] = []
    try:
        if point == "during_processor_call":
            stack.set_faults(latencyMs=600)  # the kill (150 ms in) lands mid-call
        try:
            asyncio.run(_crash_rounds(stack, victim, creds, jwks, intents, rounds))
        finally:
            victim.close()
        assert len(intents) == rounds
        asyncio.run(_check_settled(stack, creds, intents))
    finally:
        stack.set_faults()  # the next test on this stack starts without them
    assert "Traceback" not in stack.gateway.output()


def _victim(stack: Stack, tmp_path: Path, point: str) -> ServiceProcess:
    """A gateway on the stack's database, data folder and processor that SIGKILLs itself at
    ``point``; its log is the test's."""
    return ServiceProcess(
        lambda fd: gateway_command(fd), log_path=tmp_path / f"victim-{point}.log",
        env=gateway_env(stack.database_url, stack.data_dir, PAYGATE_PROCESSOR_URL=stack.simulator.base_url,
                        PAYGATE_FAULT_POINT=point, PAYGATE_RUN_BACKGROUND="0", **FAST_RECONCILE),
    )


def _card_body(jwks: dict, intent_id: str) -> dict:  # type: ignore[type-arg]
    """A ``process`` request paying ``intent_id`` with the test card."""
    jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
    return {"paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}}


async def _dies_answering(victim: ServiceProcess, creds, path: str, body: dict, **kw: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    """The victim's request, cut off by the victim's SIGKILL at its point; the victim stopped."""
    async with httpx.AsyncClient(base_url=victim.base_url, timeout=30) as victim_http:
        with pytest.raises(httpx.TransportError):
            await SignedClient(victim_http, creds).post(path, body, **kw)
    assert victim.proc is not None
    assert victim.proc.wait(timeout=10) == -9  # it really died by SIGKILL at the point
    victim.stop()


async def _crash_rounds(stack: Stack, victim: ServiceProcess, creds, jwks, intents: list[str],  # type: ignore[no-untyped-def]
                       rounds: int) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as survivor_http:
        survivor = SignedClient(survivor_http, creds)
        for _ in range(rounds):
            victim.start()
            pid = (await survivor.create_intent())["paymentIntentId"]
            intents.append(pid)
            await _dies_answering(victim, creds, "/api/v1/payment/process", _card_body(jwks, pid))


async def _check_settled(stack: Stack, creds, intents: list[str]) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
        shop = SignedClient(http, creds)
        statuses = {pid: (await shop.final_status(pid, timeout=60))["status"] for pid in intents}
    for pid, status in statuses.items():
        approved = [c for c in stack.charges_at_processor(pid) if c["status"] == "approved"]
        # Charges at the processor == succeeded intents: none twice, none lost.
        assert len(approved) == (1 if status == "succeeded" else 0), (pid, status, approved)
        assert status in {"succeeded", "failed"}


@dataclass(frozen=True)
class Operation:
    """A capture, void or refund of a payment of 2000 (``capture_method``), and what it
    leaves once done exactly once."""

    capture_method: str
    path: str
    body: dict[str, int]  # beyond paymentIntentId
    intent: tuple[str, int, int]  # the gateway's status, amountReceived, amountRefunded
    attempts: list[str]  # the kinds of the intent's attempts, in order
    refunds: list[tuple[str, int]]  # the gateway's refunds: status, amount
    # The processor's: captured, amountCaptured, voided, amountRefunded, and how many capture,
    # void and refund references reached the charge (a void sent again under a new reference
    # changes no amount: only this count shows it).
    charge: tuple[bool, int, bool, int, int, int, int]
    reference_of: Sql  # the gateway's reference of the operation (one row), by intent_id


OPERATIONS = {
    "capture": Operation("manual", "/api/v1/payment/capture", {"amount": 1500}, ("succeeded", 1500, 0),
                         ["authorization", "capture"], [], (True, 1500, False, 0, 1, 0, 0),
                         Sql("SELECT reference FROM transactions WHERE intent_id = :intent_id AND kind = 'capture'")),
    "void": Operation("manual", "/api/v1/payment/cancel", {}, ("canceled", 0, 0),
                      ["authorization", "void"], [], (False, 0, True, 0, 0, 1, 0),
                      Sql("SELECT reference FROM transactions WHERE intent_id = :intent_id AND kind = 'void'")),
    # 700: a second refund would still fit the charge, so the processor would show 1400.
    "refund": Operation("automatic", "/api/v1/payment/refund", {"amount": 700}, ("succeeded", 2000, 700),
                        ["charge"], [("succeeded", 700)], (True, 2000, False, 700, 0, 0, 1),
                        Sql("SELECT reference FROM refunds WHERE intent_id = :intent_id")),
}


@pytest.mark.slow
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_sigkill_between_operation_committed_and_answered_does_it_once(
        operation: str, rounds: int, stack: Stack, tmp_path: Path) -> None:
    """The survivor takes the payment; the victim dies in a capture, void or refund of it,
    committed with its reference: before it sent it (``after_<operation>_commit``), with
    it at the processor (``during_processor_call``), or with the processor's answer read
    and not recorded (``after_<operation>_answered``: done at the processor, ``pending`` in
    the gateway). The survivor's reconciler finds it or sends it again with that reference:
    done exactly once at the processor, and so recorded — and only that reference of its kind
    reached the processor (the simulator lists them per charge), so a second send under
    another reference fails even where it moves no money (a second void). A third of the charge test's
    rounds per point (1 by default, 6 in the slow set): the reconciler may act only past
    the in-flight grace, which one wait after all the kills serves."""
    rounds = max(1, rounds // 3)
    creds = stack.merchant()
    jwks = httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()
    intents: list[str] = []
    points = (f"after_{operation}_commit", "during_processor_call", f"after_{operation}_answered")
    for point in points:
        victim = _victim(stack, tmp_path, point)
        try:
            asyncio.run(_operation_crash_rounds(stack, victim, creds, jwks, intents, rounds,
                                                OPERATIONS[operation], point))
        finally:
            victim.close()
    assert len(intents) == len(points) * rounds
    asyncio.run(_check_done_once(stack, creds, intents, operation))
    assert "Traceback" not in stack.gateway.output()


async def _operation_crash_rounds(stack: Stack, victim: ServiceProcess, creds, jwks, intents: list[str],  # type: ignore[no-untyped-def]
                                  rounds: int, operation: Operation, point: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as survivor_http:
        survivor = SignedClient(survivor_http, creds)
        for _ in range(rounds):
            pid = (await survivor.create_intent(amount=2000, captureMethod=operation.capture_method))["paymentIntentId"]
            intents.append(pid)
            r = await survivor.post("/api/v1/payment/process", _card_body(jwks, pid))
            assert r.json()["status"] == {"manual": "requires_capture", "automatic": "succeeded"}[
                operation.capture_method], r.text
            if point == "during_processor_call":
                stack.set_faults(latencyMs=600)  # the kill (150 ms in) lands mid-call
            victim.start()
            try:
                await _dies_answering(victim, creds, operation.path, {"paymentIntentId": pid, **operation.body},
                                      idempotency_key=pid)
            finally:
                stack.set_faults()
            if point.endswith("_answered"):  # it died after the processor did it, not before
                assert _at_processor(stack, pid) == operation.charge


async def _check_done_once(stack: Stack, creds, intents: list[str], kind: str) -> None:  # type: ignore[no-untyped-def]
    operation = OPERATIONS[kind]
    db = create_database(stack.database_url)  # the gateway's references, read once per check
    try:
        async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            shop = SignedClient(http, creds)
            for pid in intents:
                history = await _settled_history(shop, pid)
                got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
                assert (got["status"], got["amountReceived"], got["amountRefunded"]) == operation.intent, got
                assert [e["data"]["kind"] for e in history if e["type"] == "attempt.created"] == operation.attempts
                # Each recorded as done, as the processor has it (not "refused": a second send of a
                # void the processor had done is refused, and the intent is canceled either way).
                attempts = {e["objectId"]: e["data"]["status"] for e in history if e["type"].startswith("attempt.")}
                assert set(attempts.values()) == {"succeeded"}, attempts
                refunds = {e["objectId"]: e["data"] for e in history if e["type"].startswith("refund.")}
                assert [(r["status"], r["amount"]) for r in refunds.values()] == operation.refunds, refunds
                # The victim's request again, with its key: still that request's (its claim is held
                # until the lock timeout, 90 s), never a second operation.
                retry = await shop.post(operation.path, {"paymentIntentId": pid, **operation.body},
                                        idempotency_key=pid)
                assert retry.json()["error"]["code"] == "idempotency_request_in_progress", retry.text
                assert _at_processor(stack, pid) == operation.charge
                # The one reference that reached the processor is the one the gateway recorded.
                async with db.read() as conn:
                    [recorded] = await fetch_all(conn, operation.reference_of, intent_id=pid)
                [charge] = stack.charges_at_processor(pid)
                assert charge[f"{kind}s"] == [recorded["reference"]], charge
    finally:
        await db.dispose()


def _at_processor(stack: Stack, pid: str) -> tuple[bool, int, bool, int, int, int, int]:
    """The intent's one charge at the processor: captured, amountCaptured, voided, amountRefunded,
    and the number of capture, void and refund references recorded against it."""
    [charge] = stack.charges_at_processor(pid)
    return (charge["captured"], charge["amountCaptured"], charge["voided"], charge["amountRefunded"],
            len(charge["captures"]), len(charge["voids"]), len(charge["refunds"]))


async def _settled_history(shop: SignedClient, pid: str) -> list[dict]:  # type: ignore[type-arg]
    """The intent's history once none of its attempts and refunds is pending or unknown."""
    async def look() -> list[dict]:  # type: ignore[type-arg]
        return (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]  # type: ignore[no-any-return]

    def settled(events: list[dict]) -> bool:  # type: ignore[type-arg]
        latest = {e["objectId"]: e["data"]["status"] for e in events if e["type"].startswith(("attempt.", "refund."))}
        return bool(latest) and not set(latest.values()) & {"pending", "unknown"}

    return await eventually(look, until=settled, timeout=60, interval=0.2, what=f"{pid}'s operations settled")
