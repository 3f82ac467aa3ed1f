"""Same seed, same history, bit for bit: in one process, and in another process with
another hash seed (the trace's digest is the history's)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from paygate_server.simulation.runner import run_traced

SEEDS = range(12)


def test_seeds_run_the_same_twice_in_one_process_with_crashes_faults_and_races() -> None:
    first, second = run_traced(SEEDS), run_traced([*SEEDS][::-1])[::-1]  # another order, another history before
    assert [r.trace for r in first] == [r.trace for r in second]
    assert [r.digest for r in first] == [r.digest for r in second]
    traces = [r.trace for r in first]
    assert any("CRASH" in line for trace in traces for line in trace)
    # webhooks too: a seed that ran the relay and the dispatcher through a crash
    assert any(r.events and r.faults["crash"] for r in first)
    # and processor notifications that settled an operation the gateway had no answer for
    assert any(line.split()[1] == "notice" and line.endswith("settled 1") for trace in traces for line in trace)
    assert sum(sum(r.faults.values()) for r in first) > len(SEEDS)
    # two requests of one intent in flight together: an op starts before an earlier one answered
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
    assert raced > len(SEEDS)


@pytest.mark.parametrize("webhooks", [False, True], ids=["payments", "with-webhooks"])
def test_a_seed_runs_the_same_in_another_process(webhooks: bool) -> None:
    seed = next(r for r in run_traced(SEEDS) if r.faults["crash"] and bool(r.events) == webhooks)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-m", "paygate_server", "simulate", "--seed", str(seed.seed), "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["digest"] == seed.digest

