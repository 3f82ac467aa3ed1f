"""``paygate simulate``: its report, its exit statuses, its usage errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _paygate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paygate_server", "simulate", *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def test_a_run_reports_seeds_steps_faults_histories_and_violations() -> None:
    out = _paygate("--seeds", "6", "--jobs", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("seeds run: 6 in ")
    assert [line.split(":")[0] for line in lines[1:]] == ["steps", "faults injected", "histories checked",
                                                          "webhook events checked", "violations"]
    assert lines[-1] == "violations: 0 seed(s)"


def test_json_and_a_violation_exit_1_with_the_replay_command() -> None:
    out = _paygate("--seeds", "10", "--jobs", "1", "--plant", "unknown-is-failure", "--json")
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["seeds"] == 10 and report["violations"] >= 1
    first = report["failures"][0]
    assert first["replay"] == f"paygate simulate --seed {first['seed']} --plant unknown-is-failure --trace"
    assert set(report) >= {"steps", "histories", "events", "faults", "elapsedS"}


@pytest.mark.parametrize("args", [
    ("--seed", "1", "--seeds", "4"),
    ("--seeds", "0"),
    ("--trace",),
    ("--jobs", "0"),
])
def test_a_wrong_combination_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    out = _paygate(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [("--seeds", "-3"), ("--seeds", "many"), ("--plant", "nonsense")])
def test_a_malformed_value_is_refused_by_the_parser(args: tuple[str, ...]) -> None:
    out = _paygate(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr.splitlines()[-1]


def test_the_command_line_offers_exactly_the_plants_there_are() -> None:
    # `--plant` offers names from plant_names.py so that `--help` need not import the plants
    # (they patch the whole payment core); the two lists are kept by hand.
    from paygate_server.simulation.plant_names import PLANT_NAMES
    from paygate_server.simulation.plants import PLANTS

    assert sorted(PLANT_NAMES) == sorted(PLANTS)
