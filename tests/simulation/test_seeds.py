"""The simulation's seeds (docs/reliability.md): none may break an invariant.

A few hundred seeds in the default set, 10,000 in the slow set (``-m slow``, what CI runs),
in chunks so that ``-n 2`` spreads them over both cores; ``PAYGATE_SIM_SEEDS`` overrides
the count. A failing chunk names each failing seed with the command that replays it.
"""
from __future__ import annotations

import os

import pytest

from paygate_server.simulation.runner import replay_command, run_seeds
from tests.support.simulation_summary import SIMULATION_PROPERTY
from tests.support.slow_set import is_slow_run

DEFAULT_SEEDS, SLOW_SEEDS = 200, 10_000
CHUNK = 50  # seeds per test: a few seconds each


def _seeds(config: pytest.Config, marks: set[str]) -> int:
    if "PAYGATE_SIM_SEEDS" in os.environ:
        return int(os.environ["PAYGATE_SIM_SEEDS"])
    return SLOW_SEEDS if is_slow_run(config, marks) else DEFAULT_SEEDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chunk" in metafunc.fixturenames:
        total = _seeds(metafunc.config, {m.name for m in metafunc.definition.iter_markers()})
        starts = range(0, total, CHUNK)
        metafunc.parametrize("chunk", [range(s, min(s + CHUNK, total)) for s in starts],
                             ids=[f"seeds-{s}-{min(s + CHUNK, total) - 1}" for s in starts])


@pytest.mark.slow
def test_no_seed_breaks_an_invariant(chunk: range, record_property: pytest.RecordProperty) -> None:
    summary = run_seeds(chunk)
    # Summed over every chunk (and xdist worker) into one line at the end of the run
    # (tests/conftest.py): how many seeds ran and which faults they injected.
    record_property(SIMULATION_PROPERTY, {"seeds": summary.seeds, "steps": summary.steps,
                                          "histories": summary.histories, "events": summary.events,
                                          "failing": summary.failing_seeds,
                                          "faults": dict(summary.faults)})
    assert summary.seeds == len(chunk)
    assert summary.histories >= len(chunk)  # every seed checked at least one intent's history
    failures = "\n".join(f"seed {seed}: {found}\n  replay: {replay_command(seed, None)}"
                         for seed, found in summary.failures)
    assert summary.failing_seeds == 0, failures
    print(f"{summary.seeds} seeds, {summary.steps} steps, {summary.histories} histories, "
          f"{summary.events} webhook events, "
          f"faults {dict(sorted(summary.faults.items()))}, {summary.elapsed_s:.1f} s")
