"""Fixtures shared by the whole suite: databases on both backends, the gateway in-process."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.app import InProcessGateway, running_gateway, test_settings
from tests.support.databases import (
    BACKENDS,
    another_database,
    drop_database,
    drop_templates,
    migrated_database_url,
)
from tests.support.simulation_summary import SimulationTotals
from tests.support.simulation_summary import record as record_simulation


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per backend per test session (tests isolate by merchant)."""
    url = migrated_database_url(request.param, tmp_path_factory.mktemp("db"))
    yield url
    drop_database(url)


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new migrated database on the same backend, for tests that need an empty one."""
    with another_database(database_url, tmp_path) as url:
        yield url


@pytest.fixture
async def gw(database_url: str, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with running_gateway(test_settings(database_url, tmp_path)) as g:
        yield g


_SIMULATION = SimulationTotals()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record_simulation(_SIMULATION, report)


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_templates()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = _SIMULATION.line()
    if line is not None:
        terminalreporter.write_line(line)
