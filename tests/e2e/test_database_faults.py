"""Network faults between a real gateway and PostgreSQL, under load (issue #21).

The gateway (``paygate serve``, a real process) reaches a PostgreSQL server of the test's
own only through :class:`~tests.support.fault_proxy.FaultProxy`; a few clients pay the
whole time. One fault at a time is switched on for a window, then healed; see
docs/reliability.md, "Network and database faults", for the model and the figures.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.support.fault_proxy import FaultProxyThread
from tests.support.fault_windows import Fault, Plan, check_windows, parametrize_plan, run_windows
from tests.support.payment_load import PaymentLoad, check_settled
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import make_merchant, start_gateway

# The gateway's database timeouts for these tests (docs/operations.md, "Database timeouts"):
# small, so a window of a few seconds shows a fault's whole course.
DB_TIMEOUTS = {
    "PAYGATE_DB_POOL_SIZE": "10",
    "PAYGATE_DB_POOL_TIMEOUT_S": "2",
    "PAYGATE_DB_CONNECT_TIMEOUT_S": "1",
    "PAYGATE_DB_COMMAND_TIMEOUT_S": "2",
    "PAYGATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_S": "5",
}
# No call may take longer than this during a fault that silences the database: pool wait +
# connect + twice (timeout and cancel) for each of at most two statements that meet it
# (docs/operations.md, "Database timeouts"); up to 5.6 s is observed.
MAX_LATENCY_S = sum(float(DB_TIMEOUTS[f"PAYGATE_DB_{name}_S"]) for name in ("POOL_TIMEOUT", "CONNECT_TIMEOUT")) \
    + 4 * float(DB_TIMEOUTS["PAYGATE_DB_COMMAND_TIMEOUT_S"])
WINDOW_S, SLOW_WINDOW_S = 2.5, 8.0

DB_FAULTS = [
    Fault("latency 150 ms each way", lambda p: p.latency(0.15, 0.15)),
    Fault("latency 3 s to the server", lambda p: p.latency(3.0, 0.0)),
    Fault("connection resets", lambda p: (p.refuse(True), p.reset_all()), during=lambda p: p.reset_all()),
    Fault("blackhole", lambda p: p.blackhole()),
    Fault("half-open", lambda p: p.half_open(True)),
]


# Every run: the two faults that hang a connection, briefly (resets: the restart test and
# tests/server/storage/test_availability.py); the slow set: all, longer.
QUICK = Plan("quick", [f for f in DB_FAULTS if f.name in {"blackhole", "half-open"}], WINDOW_S)
FULL = Plan("all-long", DB_FAULTS, SLOW_WINDOW_S)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_plan(metafunc, QUICK, FULL)


@pytest.mark.slow
@pytest.mark.postgres
def test_database_faults_under_load(private_pg: PrivatePostgres, tmp_path: Path, plan: Plan) -> None:
    with FaultProxyThread("127.0.0.1", private_pg.port) as proxy, \
            SimulatorProcess(tmp_path / "simulator.db") as simulator, \
            start_gateway(private_pg.url(port=proxy.port), tmp_path, PAYGATE_PROCESSOR_URL=simulator.base_url,
                          **FAST_RECONCILE, **DB_TIMEOUTS) as gateway:
        creds = make_merchant(private_pg.url())
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
