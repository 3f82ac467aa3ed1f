"""Network faults between a real gateway and the processor, under load (issue #21).

The gateway reaches the processor simulator only through a fault proxy (its reconciler
too); a few clients pay the whole time. A processor that is slow, resets, swallows
requests or answers into the void must cost the clients nothing worse than an intent left
``in_progress`` for the reconciler — never a 5xx other than 503, never a hang — and once
it is healed the simulator's ledger (the oracle) must match the gateway: nothing charged
twice, nothing acknowledged lost, nothing left unknown. On both databases.
docs/reliability.md, "Network and database faults", has the figures.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.support.databases import BACKENDS, drop_database, migrated_database_url
from tests.support.fault_proxy import FaultProxyThread
from tests.support.fault_windows import Fault, Plan, check_windows, parametrize_plan, run_windows
from tests.support.payment_load import PaymentLoad, check_settled
from tests.support.processes import make_merchant, start_gateway

# FAST_RECONCILE's processor timeouts (connect 0.5 s, read 2.5 s) and wait budget (5 s)
# bound a process call (the wait budget, then reading the intent to answer); up to 3.3 s is observed.
MAX_LATENCY_S = 10.0
# The quick plan's 1.5 s still meets the read timeout: a call started in the window waits
# out its 3 s late answer or the half-open silence (2.5 s, the timeout, is observed).
WINDOW_S, SLOW_WINDOW_S = 1.5, 8.0

PROCESSOR_FAULTS = [
    Fault("latency 150 ms each way", lambda p: p.latency(0.15, 0.15)),
    # Answers arrive after the read timeout: the processor charged, the gateway does not
    # know: the reconciler must find those charges.
    Fault("answers 3 s late", lambda p: p.latency(0.0, 3.0)),
    Fault("connection resets", lambda p: (p.refuse(True), p.reset_all()), during=lambda p: p.reset_all()),
    Fault("blackhole", lambda p: p.blackhole()),
    Fault("half-open", lambda p: p.half_open(True)),
]


# Every run: the two faults that leave outcomes unknown, briefly, on SQLite; the slow set:
# all, longer, on both databases.
QUICK = Plan("quick", [f for f in PROCESSOR_FAULTS if f.name in {"answers 3 s late", "half-open"}], WINDOW_S)
FULL = Plan("all-long", PROCESSOR_FAULTS, SLOW_WINDOW_S)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    plan = parametrize_plan(metafunc, QUICK, FULL)
    if "backend" in metafunc.fixturenames:
        # One database in every run (the faults are the processor's); both in the slow set.
        metafunc.parametrize("backend", ["sqlite"] if plan is QUICK else BACKENDS)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    url = migrated_database_url(backend, tmp_path)
    yield url
    drop_database(url)


@pytest.mark.slow
def test_processor_faults_under_load(database_url: str, tmp_path: Path, plan: Plan) -> None:
    with SimulatorProcess(tmp_path / "simulator.db") as simulator, \
            FaultProxyThread("127.0.0.1", int(urlsplit(simulator.base_url).port or 0)) as proxy, \
            start_gateway(database_url, tmp_path, PAYGATE_PROCESSOR_URL=f"http://127.0.0.1:{proxy.port}",
                          **FAST_RECONCILE) as gateway:
        creds = make_merchant(database_url)
        jwks = httpx.get(f"{gateway.base_url}/checkout/v1/keys").json()

        async def scenario() -> None:
            load = PaymentLoad(gateway.base_url, creds, jwks)
            windows = await run_windows(load, proxy, plan.faults, plan.window_s)
            started = time.monotonic()
            settled = await check_settled(gateway.base_url, simulator.base_url, load)
            print(f"settled {settled} in {time.monotonic() - started:.1f}s after the last fault")
            check_windows(windows, MAX_LATENCY_S)

        asyncio.run(scenario())
        assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died"
