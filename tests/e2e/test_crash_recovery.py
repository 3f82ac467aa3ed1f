"""SIGKILL the gateway at each dangerous point of a payment, many times, and prove that
after restart and reconciliation nothing is charged twice, lost, or left in flight.

Two gateway processes share the database, as in a multi-worker deployment: the *victim*
runs with ``PAYGATE_FAULT_POINT`` and kills itself (SIGKILL: no clean-up of any kind) at
that point of the first payment it handles, then is restarted; the *survivor* serves the
checks and runs the reconciler.

Rounds (kills) per point: 2 by default, 20 when the run selects the slow set (``-m slow``;
each database gets them, like every test). The test is marked ``slow`` so that ``-m slow``
picks it; it counts as a slow-set run when it would not have been selected without that
mark (see ``_rounds``); the count shows in the test id. ``PAYGATE_CRASH_ROUNDS`` overrides both.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
import pytest

import paygate
from paygate_server.procs import ServiceProcess, gateway_command
from tests.e2e.conftest import FAST_RECONCILE, Stack
from tests.support.processes import gateway_env
from tests.support.signing import SignedClient
from tests.support.slow_set import is_slow_run

ROUNDS, SLOW_ROUNDS = 2, 20
POINTS = ["after_attempt_commit", "during_processor_call", "after_processor_approved"]


def _rounds(config: pytest.Config, marks: set[str]) -> int:
    """20 rounds in the slow set (tests/support/slow_set.py), 2 otherwise."""
    if "PAYGATE_CRASH_ROUNDS" in os.environ:
        return int(os.environ["PAYGATE_CRASH_ROUNDS"])
    return SLOW_ROUNDS if is_slow_run(config, marks) else ROUNDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The round count is a parameter, so the test id says it (``[2-rounds-...]``)."""
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
        lambda fd: gateway_command(fd), log_path=tmp_path / "victim.log",
        env=gateway_env(stack.database_url, stack.data_dir, PAYGATE_PROCESSOR_URL=stack.simulator.base_url,
                        PAYGATE_FAULT_POINT=point, PAYGATE_RUN_BACKGROUND="0", **FAST_RECONCILE),
    )


async def _crash_rounds(stack: Stack, victim: ServiceProcess, creds, jwks, intents: list[str],  # type: ignore[no-untyped-def]
                       rounds: int) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as survivor_http:
        survivor = SignedClient(survivor_http, creds)
        for _ in range(rounds):
            victim.start()
            pid = (await survivor.create_intent())["paymentIntentId"]
            intents.append(pid)
            jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
            async with httpx.AsyncClient(base_url=victim.base_url, timeout=30) as victim_http:
                with pytest.raises(httpx.TransportError):
                    await SignedClient(victim_http, creds).post("/api/v1/payment/process", {
                        "paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
            assert victim.proc is not None
            assert victim.proc.wait(timeout=10) == -9  # it really died by SIGKILL at the point
            victim.stop()


async def _check_settled(stack: Stack, creds, intents: list[str]) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
        shop = SignedClient(http, creds)
        statuses = {pid: (await shop.final_status(pid, timeout=60))["status"] for pid in intents}
    for pid, status in statuses.items():
        approved = [c for c in stack.charges_at_processor(pid) if c["status"] == "approved"]
        # Charges at the processor == succeeded intents: none twice, none lost.
        assert len(approved) == (1 if status == "succeeded" else 0), (pid, status, approved)
        assert status in {"succeeded", "failed"}


CAPTURE_POINTS = ["after_capture_commit", "during_processor_call"]


@pytest.mark.slow
@pytest.mark.parametrize("point", CAPTURE_POINTS)
def test_sigkill_between_capture_committed_and_answered_captures_once(
        point: str, rounds: int, stack: Stack, tmp_path: Path) -> None:
    """The victim authorizes nothing: the survivor does; the victim dies while capturing
    (before it sent the capture, or with the capture at the processor); the survivor's
    reconciler finds it or sends it again with its reference: captured exactly once. A third
    of the charge test's rounds (1 by default, 6 in the slow set): each waits out the
    in-flight grace before the reconciler may act."""
    rounds = max(1, rounds // 3)
    victim = _victim(stack, tmp_path, point)
    creds = stack.merchant()
    jwks = httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()
    intents: list[str] = []
    try:
        asyncio.run(_capture_crash_rounds(stack, victim, creds, jwks, intents, rounds, point))
    finally:
        victim.close()
    assert len(intents) == rounds
    asyncio.run(_check_captured_once(stack, creds, intents))
    assert "Traceback" not in stack.gateway.output()


async def _capture_crash_rounds(stack: Stack, victim: ServiceProcess, creds, jwks, intents: list[str],  # type: ignore[no-untyped-def]
                                rounds: int, point: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as survivor_http:
        survivor = SignedClient(survivor_http, creds)
        for _ in range(rounds):
            pid = (await survivor.create_intent(amount=2000, captureMethod="manual"))["paymentIntentId"]
            intents.append(pid)
            jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
            r = await survivor.post("/api/v1/payment/process", {
                "paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
            assert r.json()["status"] == "requires_capture", r.text
            if point == "during_processor_call":
                stack.set_faults(latencyMs=600)  # the kill (150 ms in) lands mid-call
            victim.start()
            try:
                async with httpx.AsyncClient(base_url=victim.base_url, timeout=30) as victim_http:
                    with pytest.raises(httpx.TransportError):
                        await SignedClient(victim_http, creds).post("/api/v1/payment/capture",
                                                                    {"paymentIntentId": pid, "amount": 1500})
            finally:
                stack.set_faults()
            assert victim.proc is not None
            assert victim.proc.wait(timeout=10) == -9  # it really died by SIGKILL at the point
            victim.stop()


async def _check_captured_once(stack: Stack, creds, intents: list[str]) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
        shop = SignedClient(http, creds)
        for pid in intents:
            assert (await shop.final_status(pid, timeout=60))["status"] == "succeeded"
            got = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
            assert got["amountReceived"] == 1500
            history = (await shop.get(f"/api/v1/payment/intent/{pid}/history")).json()["data"]
            assert [e["data"]["kind"] for e in history if e["type"] == "attempt.created"] == \
                ["authorization", "capture"]
            [charge] = stack.charges_at_processor(pid)
            assert (charge["captured"], charge["amountCaptured"], charge["voided"]) == (True, 1500, False)
