"""Fixtures: the gateway in-process, talking to a real simulator process."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from paygate_server.simulator.testing import start_simulator
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as settings_for


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(tmp_path_factory.mktemp("simulator"), slow_card_delay_s=1.0) as url:
        yield url


@pytest.fixture
async def pgw(database_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway that can process payments (the simulator as its processor)."""
    async with running_gateway(settings_for(database_url, tmp_path, processor_url=simulator_url)) as g:
        yield g
