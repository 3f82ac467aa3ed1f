"""Network faults between a real gateway and PostgreSQL, under load (issue #21).

The gateway (``paygate serve``, a real process) reaches a PostgreSQL server of the test's
own only through :class:`~tests.support.fault_proxy.FaultProxy`; a few clients pay the
whole time. One fault at a time is switched on for a window, then healed; see
docs/reliability.md, "Network and database faults", for the model and the figures.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.support.databases import migrate
from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxyThread
from tests.support.payment_load import PaymentLoad, Window, check_settled, summarize
from tests.support.private_postgres import PrivatePostgres, Unavailable
from tests.support.processes import make_merchant, start_gateway

# The gateway's database timeouts for these tests (docs/operations.md): small, so a window
# of a few seconds shows a fault's whole course.
DB_TIMEOUTS = {
    "PAYGATE_DB_POOL_SIZE": "10",
    "PAYGATE_DB_POOL_TIMEOUT_S": "2",
    "PAYGATE_DB_CONNECT_TIMEOUT_S": "1",
    "PAYGATE_DB_COMMAND_TIMEOUT_S": "2",
}
# No call may take longer than this during a fault (the bound the gateway's timeouts give;
# docs/reliability.md derives it).
MAX_LATENCY_S = 10.0
WINDOW_S, SLOW_WINDOW_S = 2.5, 8.0


@dataclass(frozen=True)
class Fault:
    name: str
    on: Callable[[FaultProxyThread], object]
    during: Callable[[FaultProxyThread], object] | None = None  # again every DURING_EVERY_S


DURING_EVERY_S = 0.3

DB_FAULTS = [
    Fault("latency 150 ms each way", lambda p: p.latency(0.15, 0.15)),
    Fault("latency 3 s to the server", lambda p: p.latency(3.0, 0.0)),
    Fault("connection resets", lambda p: (p.refuse(True), p.reset_all()), during=lambda p: p.reset_all()),
    Fault("blackhole", lambda p: p.blackhole()),
    Fault("half-open", lambda p: p.half_open(True)),
]


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except Unavailable as exc:
        pytest.skip(f"no private PostgreSQL for fault tests: {exc}")
    with pg:
        migrate(pg.url())
        yield pg


async def run_windows(base_url: str, load: PaymentLoad, proxy: FaultProxyThread, faults: list[Fault],
                      window_s: float) -> list[Window]:
    """Each fault for ``window_s`` under load, healed, and the time until a payment succeeds again."""
    load.start()
    windows = []
    try:
        await _steady(load, time.monotonic())
        for fault in faults:
            start = time.monotonic()
            fault.on(proxy)
            while time.monotonic() - start < window_s:
                await asyncio.sleep(DURING_EVERY_S)  # the fault's pacing (a reset every so often)
                if fault.during is not None:
                    fault.during(proxy)
            proxy.heal()
            end = time.monotonic()
            await _steady(load, end)
            windows.append(summarize(load, fault.name, start, end))
            print(windows[-1].line())  # the figures docs/reliability.md quotes (pytest -s shows them)
    finally:
        await load.stop()
    return windows


async def _steady(load: PaymentLoad, since: float) -> None:
    await eventually(lambda: load.succeeded_after(since), timeout=30, interval=0.05,
                     what="a payment to succeed")


def _check(windows: list[Window]) -> None:
    for w in windows:
        assert not w.bad, w.line()
        assert w.max_latency_s <= MAX_LATENCY_S, w.line()


@pytest.mark.postgres
@pytest.mark.parametrize("window_s", [pytest.param(WINDOW_S, id="short"),
                                      pytest.param(SLOW_WINDOW_S, id="long", marks=pytest.mark.slow)])
def test_database_faults_under_load(private_pg: PrivatePostgres, tmp_path: Path, window_s: float) -> None:
    with FaultProxyThread("127.0.0.1", private_pg.port) as proxy, \
            SimulatorProcess(tmp_path / "simulator.db") as simulator, \
            start_gateway(private_pg.url(port=proxy.port), tmp_path, PAYGATE_PROCESSOR_URL=simulator.base_url,
                          **FAST_RECONCILE, **DB_TIMEOUTS) as gateway:
        creds = make_merchant(private_pg.url())
        jwks = httpx.get(f"{gateway.base_url}/checkout/v1/keys").json()

        async def scenario() -> tuple[list[Window], dict[str, int]]:
            load = PaymentLoad(gateway.base_url, creds, jwks)
            windows = await run_windows(gateway.base_url, load, proxy, DB_FAULTS, window_s)
            t = time.monotonic()
            settled = await check_settled(gateway.base_url, simulator.base_url, load)
            print(f"settled in {time.monotonic() - t:.1f}s")
            return windows, settled

        windows, settled = asyncio.run(scenario())
        print(f"settled: {settled}")
        assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died"
        _check(windows)
