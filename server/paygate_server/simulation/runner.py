"""Many seeds, in one process or several: what ``paygate simulate`` and the tests run.

Each worker process makes its own template database once (simulation/template.py: kept
for the process's later runs) and runs its share of the seeds one after another in a
scratch directory (in ``/dev/shm`` where there is one: the simulation's SQLite files need
no disk). A seed's result does not depend on the process
that ran it, or on what ran before it there.
"""
from __future__ import annotations

import gc
import multiprocessing
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from paygate_server.simulation.plants import planted
from paygate_server.simulation.template import Template
from paygate_server.simulation.world import SeedResult, collect_garbage, run_seed

__all__ = ["Summary", "replay_command", "run_one", "run_seeds", "run_traced"]

MAX_REPORTED = 20  # failing seeds kept in a summary


@dataclass
class Summary:
    seeds: int = 0
    steps: int = 0
    histories: int = 0
    events: int = 0  # webhook events checked
    faults: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, list[str]]] = field(default_factory=list)  # (seed, violations)
    failing_seeds: int = 0
    elapsed_s: float = 0.0

    def add(self, result: SeedResult) -> None:
        self.seeds += 1
        self.steps += result.steps
        self.histories += result.histories
        self.events += result.events
        self.faults.update(result.faults)
        if result.violations:
            self.failing_seeds += 1
            if len(self.failures) < MAX_REPORTED:
                self.failures.append((result.seed, result.violations))


def replay_command(seed: int, plant: str | None) -> str:
    return f"paygate simulate --seed {seed}" + (f" --plant {plant}" if plant else "") + " --trace"


def _scratch() -> Path:
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="paygate-sim-", dir=shm if shm.is_dir() else None))


def _template(scratch: Path) -> Template:
    template = Template.create(scratch / "template")  # built by the process's first run only
    # What an earlier run of this process left for the collector (a crashed gateway's
    # connections) goes now, outside any seed; what exists then (modules, the template's
    # objects) lives as long as the process: out of the collector's sight, so that the
    # collection after each crash costs milliseconds.
    collect_garbage()
    gc.freeze()
    return template


def run_traced(seeds: Sequence[int], plant: str | None = None) -> list[SeedResult]:
    """Seeds with their traces (replays), in this process."""
    scratch = _scratch()
    try:
        template = _template(scratch)
        with planted(plant):
            return [run_seed(seed, template, scratch / "seed") for seed in seeds]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_one(seed: int, plant: str | None = None) -> SeedResult:
    """One seed, with its trace (a replay)."""
    return run_traced([seed], plant)[0]


def _run_share(seeds: Sequence[int], plant: str | None) -> Summary:
    scratch = _scratch()
    summary = Summary()
    try:
        template = _template(scratch)
        with planted(plant):
            for seed in seeds:
                result = run_seed(seed, template, scratch / "seed")
                result.trace = []
                summary.add(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return summary


def run_seeds(seeds: Sequence[int], *, jobs: int = 1, plant: str | None = None) -> Summary:
    """Run ``seeds`` over ``jobs`` processes (1: this one) and add up what they found."""
    started = time.perf_counter()
    if jobs <= 1 or len(seeds) < 2:
        total = _run_share(seeds, plant)
    else:
        shares = [seeds[i::jobs] for i in range(jobs)]
        total = Summary()
        # spawn: a worker starts clean (no threads or loops inherited from this process).
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for part in pool.map(_run_share, shares, [plant] * jobs):
                total.seeds += part.seeds
                total.steps += part.steps
                total.histories += part.histories
                total.events += part.events
                total.faults.update(part.faults)
                total.failing_seeds += part.failing_seeds
                total.failures += part.failures
        total.failures = sorted(total.failures)[:MAX_REPORTED]
    total.elapsed_s = time.perf_counter() - started
    return total
