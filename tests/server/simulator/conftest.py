"""Fixtures: the simulator as a real child process (see paygate_server.simulator.testing)."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from paygate_server.simulator.testing import SimulatorProcess, start_simulator

# Short enough to keep the suite fast, long enough to be told apart from an instant answer.
SLOW_CARD_DELAY_S = 1.0


@pytest.fixture(scope="session")
def slow_card_delay_s() -> float:
    return SLOW_CARD_DELAY_S


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator shared by the tests of one module (no faults are set on it)."""
    with start_simulator(
        tmp_path_factory.mktemp("simulator"), slow_card_delay_s=SLOW_CARD_DELAY_S
    ) as url:
        yield url


@pytest.fixture
def simulator_factory(tmp_path: pathlib.Path) -> Iterator[Callable[..., SimulatorProcess]]:
    """Start private simulators (for faults, restarts, file inspection); all stopped after."""
    started: list[SimulatorProcess] = []

    def factory(name: str = "sim", **kwargs: Any) -> SimulatorProcess:
        kwargs.setdefault("slow_card_delay_s", SLOW_CARD_DELAY_S)
        process = SimulatorProcess(tmp_path / f"{name}.sqlite3", **kwargs)
        started.append(process)
        process.start()
        return process

    yield factory
    for process in started:
        process.close()


@pytest.fixture
async def client(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=simulator_url, timeout=10.0) as c:
        yield c
