"""Fixtures of the store's contract tests (test_payment_store*.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.server.storage.payment_store_helpers import Shop, new_shop
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings


@pytest.fixture
async def shop(gw: InProcessGateway) -> Shop:
    return await new_shop(gw)


@pytest.fixture
async def lone(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Shop]:
    """A merchant on a database of its own: the queue, the keys and the day's records hold
    only this test's rows."""
    async with running_gateway(make_settings(fresh_database_url, tmp_path / "lone")) as g:
        yield await new_shop(g)
