"""A real stack for end-to-end tests: the processor simulator and gateway processes,
talking HTTP over loopback, on SQLite and PostgreSQL."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from paygate_server.procs import ServiceProcess
from paygate_server.simulator.testing import SimulatorProcess, list_charges
from tests.support.databases import migrate
from tests.support.logscan import SessionLogs, scan_server_logs
from tests.support.private_postgres import PrivatePostgres, Unavailable
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import Credentials

# Fast schedules so a test sees the reconciler work within seconds; production defaults
# are minutes to hours (see Settings).
FAST_RECONCILE = {
    "PAYGATE_PROCESSOR_TIMEOUT_S": "2.5",
    "PAYGATE_PROCESSOR_CONNECT_TIMEOUT_S": "0.5",
    "PAYGATE_PROCESS_WAIT_BUDGET_S": "5",
    "PAYGATE_RECONCILE_SCHEDULE_S": "0.3,0.5,1",
    "PAYGATE_RECONCILE_NOT_FOUND_AFTER_S": "2",
    "PAYGATE_RECONCILE_SWEEP_INTERVAL_S": "0.5",
}


@pytest.fixture(scope="module", autouse=True)
def _no_secrets_in_server_logs(scan_server_logs: SessionLogs, request: pytest.FixtureRequest) -> Iterator[None]:
    """Every line the module's gateway and simulator processes logged is scanned for card
    numbers, CVCs, secrets and signatures (teardown runs after the stack has stopped). A
    module whose processes serve no HTTP requests (``SERVES_REQUESTS = False``: the relay
    crash test drives ``paygate relay``) is scanned too, but cannot show request lines."""
    yield
    scan_server_logs.assert_clean()
    if getattr(request.module, "SERVES_REQUESTS", True):
        assert scan_server_logs.request_lines > 0, "no request log line reached the scan: it proves nothing"


__all__ = ["scan_server_logs"]


@dataclass
class Stack:
    simulator: SimulatorProcess
    gateway: ServiceProcess
    database_url: str
    data_dir: Path

    def merchant(self, name: str = "Shop", origins: list[str] | None = None) -> Credentials:
        return make_merchant(self.database_url, name, origins)

    def charges_at_processor(self, intent_id: str) -> list[dict[str, Any]]:
        """The simulator's rows for the intent (``simulator.testing.list_charges``: each with
        the references of the captures, voids and refunds that reached it)."""
        return list_charges(self.simulator.base_url, intent_id)

    def set_faults(self, **faults: float) -> None:
        httpx.post(f"{self.simulator.base_url}/v1/_faults", json=faults).raise_for_status()


@contextlib.contextmanager
def running_stack(database_url: str, data_dir: Path, **env: str) -> Iterator[Stack]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with SimulatorProcess(data_dir / "simulator.db", slow_card_delay_s=6.0) as simulator:
        with start_gateway(database_url, data_dir, PAYGATE_PROCESSOR_URL=simulator.base_url,
                           **{**FAST_RECONCILE, **env}) as gateway:
            yield Stack(simulator, gateway, database_url, data_dir)


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(database_url, tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A migrated PostgreSQL server of this test session's own (per xdist worker), for
    faults no test may inflict on the shared one (a restart, a proxy the test controls in
    front of every connection). Tests isolate by merchant; one restarts it."""
    try:
        pg = PrivatePostgres()
    except Unavailable as exc:
        pytest.skip(f"no private PostgreSQL for fault tests: {exc}")
    with pg:
        migrate(pg.url())
        yield pg
