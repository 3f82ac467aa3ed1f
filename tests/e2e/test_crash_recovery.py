"""SIGKILL the gateway at each dangerous point of a payment, many times, and prove that
after restart and reconciliation nothing is charged twice, lost, or left in flight.

Two gateway processes share the database, as in a multi-worker deployment: the *victim*
runs with ``PAYGATE_FAULT_POINT`` and kills itself (SIGKILL: no clean-up of any kind) at
that point of the first payment it handles, then is restarted; the *survivor* serves the
checks and runs the reconciler.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest

import paygate
from paygate_server.procs import ServiceProcess, gateway_command
from tests.e2e.conftest import FAST_RECONCILE, Stack, running_stack
from tests.support.processes import gateway_env
from tests.support.signing import SignedClient

ROUNDS = int(os.environ.get("PAYGATE_CRASH_ROUNDS", "20"))
POINTS = ["after_attempt_commit", "during_processor_call", "after_processor_approved"]


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_point_never_double_charges_or_loses(point: str, database_url: str, tmp_path: Path) -> None:
    with running_stack(database_url, tmp_path) as stack:
        if point == "during_processor_call":
            stack.set_faults(latencyMs=600)  # the kill (150 ms in) lands mid-call
        victim = ServiceProcess(
            lambda fd: gateway_command(fd), log_path=tmp_path / "victim.log",
            env=gateway_env(database_url, tmp_path, PAYGATE_PROCESSOR_URL=stack.simulator.base_url,
                            PAYGATE_FAULT_POINT=point, PAYGATE_RUN_BACKGROUND="0", **FAST_RECONCILE),
        )
        creds = stack.merchant()
        jwks = httpx.get(f"{stack.gateway.base_url}/checkout/v1/keys").json()
        intents: list[str] = []
        try:
            asyncio.run(_crash_rounds(stack, victim, creds, jwks, intents))
        finally:
            victim.close()
        asyncio.run(_check_settled(stack, creds, intents))
        assert "Traceback" not in stack.gateway.output()


async def _crash_rounds(stack: Stack, victim: ServiceProcess, creds, jwks, intents: list[str]) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as survivor_http:
        survivor = SignedClient(survivor_http, creds)
        for _ in range(ROUNDS):
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
        deadline = time.monotonic() + 60
        statuses: dict[str, str] = {}
        for pid in intents:
            while True:
                status = (await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=5")).json()["status"]
                if status != "in_progress" or time.monotonic() > deadline:
                    break
            statuses[pid] = status
    assert "in_progress" not in statuses.values(), statuses
    for pid, status in statuses.items():
        approved = [c for c in stack.charges_at_processor(pid) if c["status"] == "approved"]
        # Charges at the processor == succeeded intents: none twice, none lost.
        assert len(approved) == (1 if status == "succeeded" else 0), (pid, status, approved)
        assert status in {"succeeded", "failed"}
