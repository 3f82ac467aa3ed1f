"""Fixtures for connector tests: a real simulator process, shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from paygate_server.simulator.testing import start_simulator

SLOW_CARD_DELAY_S = 1.0


@pytest.fixture(scope="session")
def slow_card_delay_s() -> float:
    return SLOW_CARD_DELAY_S


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(
        tmp_path_factory.mktemp("connector-simulator"), slow_card_delay_s=SLOW_CARD_DELAY_S
    ) as url:
        yield url
