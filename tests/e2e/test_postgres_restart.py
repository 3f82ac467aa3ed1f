"""PostgreSQL restarted under load (issue #21): ``pg_ctl restart -m fast`` on a server of
the test's own while a few clients pay through a real gateway.

During the restart every answer is a success, a client error or ``503`` with
``Retry-After``, within the bound; afterwards the gateway serves again without being
restarted itself (its pool replaces every connection the restart closed), and nothing is
lost, doubled or left unknown. docs/reliability.md, "Network and database faults", has the
figures.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.e2e.test_database_faults import DB_TIMEOUTS, MAX_LATENCY_S
from tests.support.fault_windows import check_windows, steady
from tests.support.payment_load import PaymentLoad, Window, check_settled, summarize
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import make_merchant, start_gateway
from tests.support.slow_set import is_slow_run

RESTARTS, SLOW_RESTARTS = 1, 20


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One restart in every run, 20 in the slow set (the count shows in the test id)."""
    if "restarts" in metafunc.fixturenames:
        slow = is_slow_run(metafunc.config, {m.name for m in metafunc.definition.iter_markers()})
        restarts = SLOW_RESTARTS if slow else RESTARTS
        metafunc.parametrize("restarts", [restarts], ids=[f"{restarts}-restarts"])


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restarted_under_load(private_pg: PrivatePostgres, tmp_path: Path, restarts: int) -> None:
    with SimulatorProcess(tmp_path / "simulator.db") as simulator, \
            start_gateway(private_pg.url(), tmp_path, PAYGATE_PROCESSOR_URL=simulator.base_url,
                          **FAST_RECONCILE, **DB_TIMEOUTS) as gateway:
        creds = make_merchant(private_pg.url())
        jwks = httpx.get(f"{gateway.base_url}/checkout/v1/keys").json()
        pid = gateway.pid

        async def scenario() -> None:
            load = PaymentLoad(gateway.base_url, creds, jwks)
            load.start()
            windows: list[Window] = []
            try:
                await steady(load, time.monotonic())
                for n in range(restarts):
                    start = time.monotonic()
                    await asyncio.to_thread(private_pg.restart, "fast")  # the load goes on meanwhile
                    end = time.monotonic()
                    await steady(load, end)
                    windows.append(summarize(load, f"restart {n + 1} ({end - start:.2f}s)", start, end))
                    print(windows[-1].line())
            finally:
                await load.stop()
            settled = await check_settled(gateway.base_url, simulator.base_url, load)
            print(f"settled {settled}")
            check_windows(windows, MAX_LATENCY_S)
            assert sum(w.unavailable for w in windows) + sum(w.ok for w in windows) > 0

        asyncio.run(scenario())
        assert gateway.proc is not None and gateway.proc.poll() is None and gateway.pid == pid, \
            "the gateway was not meant to restart"
    # An outage is not a bug: the background loops (the change notifier's connection dies with
    # every restart) log it in one warning line each, never a traceback.
    log = (tmp_path / "gateway.log").read_text()
    assert "the database is unavailable" in log
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
