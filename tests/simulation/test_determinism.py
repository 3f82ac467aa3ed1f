"""Same seed, same history, bit for bit: in one process, and in another process with
another hash seed (the trace's digest is the history's)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from paygate_server.simulation.runner import run_one

# Seeds with crashes, faults of several kinds and racing clients (their traces say so).
SEEDS = (3, 7, 82)


def test_a_seed_runs_the_same_twice_in_one_process() -> None:
    for seed in SEEDS:
        first, second = run_one(seed), run_one(seed)
        assert first.trace == second.trace
        assert first.digest == second.digest
        assert first.steps > 0 and sum(first.faults.values()) > 0


def test_the_seeds_exercise_crashes_and_races() -> None:
    traces = [run_one(seed).trace for seed in SEEDS]
    assert any("CRASH" in line for trace in traces for line in trace)
    # two requests of one intent in flight together: an op starts before the previous one answered
    raced = 0
    for trace in traces:
        open_ops: set[str] = set()
        for line in trace:
            words = line.split()
            if words[1] == "op" and words[3] != "->":
                raced += bool(open_ops)
                open_ops.add(words[2])
            elif words[1] == "op":
                open_ops.discard(words[2])
    assert raced > 0


def test_a_seed_runs_the_same_in_another_process() -> None:
    here = run_one(SEEDS[0]).digest
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-m", "paygate_server", "simulate", "--seed", str(SEEDS[0]), "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["digest"] == here
