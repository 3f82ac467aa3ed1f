"""The serving process tunes the garbage collector once startup is done; tests do not."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate_server.app import create_app, create_app_from_env
from paygate_server.heap import YOUNG_GENERATION_THRESHOLD, settle_after_startup
from tests.support.app import TEST_MASTER_KEY
from tests.support.app import test_settings as settings_for
from tests.support.databases import migrated_database_url


@pytest.fixture
def interpreter_gc() -> Iterator[tuple[int, int, int]]:
    """The interpreter's collector settings, put back whatever the test does to them."""
    gc.unfreeze()
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settling_freezes_the_startup_heap_and_widens_the_young_generation(
    interpreter_gc: tuple[int, int, int],
) -> None:
    settle_after_startup()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *interpreter_gc[1:])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = migrated_database_url("sqlite", tmp_path)
    return url


async def test_the_serving_app_settles_the_heap_after_startup(
    interpreter_gc: tuple[int, int, int], sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {"PAYGATE_DATABASE_URL": sqlite_url, "PAYGATE_DATA_DIR": str(tmp_path),
                        "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_RUN_BACKGROUND": "0"}.items():
        monkeypatch.setenv(name, value)
    app = create_app_from_env()
    assert gc.get_freeze_count() == 0, "nothing is frozen before the app has started"
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG_GENERATION_THRESHOLD


async def test_an_app_built_for_tests_leaves_the_collector_alone(
    interpreter_gc: tuple[int, int, int], sqlite_url: str, tmp_path: Path,
) -> None:
    app = create_app(settings_for(sqlite_url, tmp_path))
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == interpreter_gc
