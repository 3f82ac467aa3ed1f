"""`make lint` is part of CI: ruff over the tree is clean, and the target runs ruff and mypy
(strict on the SDK) before `.ci/run` starts the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "sdk", "server", "checkout", "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_lint_runs_ruff_and_mypy_strict_on_the_sdk() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n prints the recipe without running it; the stamp prerequisites may print too.
    done = subprocess.run(["make", "-n", "lint"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.splitlines()
    assert ".venv/bin/ruff check sdk server checkout tests" in commands
    assert ".venv/bin/mypy --strict sdk/paygate" in commands
    assert ".venv/bin/mypy server/paygate_server checkout/paygate_checkout" in commands


def test_ci_lints_before_it_tests() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make lint" in lines and "make test" in lines
    assert lines.index("make lint") < lines.index("make test")
