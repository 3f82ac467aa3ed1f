"""The template database is built once per process and kept for its later runs (each test
chunk is a run of its own): a seed run from the kept template is the seed run from a fresh
one."""
from __future__ import annotations

from typing import Any

import pytest

from paygate_server.simulation import template
from paygate_server.simulation.runner import run_traced


def test_a_process_builds_its_template_once_and_a_seed_runs_the_same_from_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template, "_BUILT", [])  # a fresh build, as in a new process
    built: list[object] = []
    real = template._build

    async def counted(*args: Any) -> str:
        built.append(args)
        return await real(*args)
    monkeypatch.setattr(template, "_build", counted)
    fresh = run_traced([3, 7])
    assert len(built) == 1
    kept = run_traced([3, 7])  # another run of the process: the kept template
    assert len(built) == 1, "the template was built again"
    assert [r.trace for r in kept] == [r.trace for r in fresh]
    assert [r.digest for r in kept] == [r.digest for r in fresh]
