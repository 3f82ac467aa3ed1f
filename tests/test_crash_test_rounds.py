"""The crash test's round count follows the marker selection: 3 by default, 20 under ``-m slow``
(checked on what pytest itself collects, in a separate run). Outside ``tests/e2e``: that
package's fixtures expect every module to start servers."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CRASH_TEST = "tests/e2e/test_crash_recovery.py"


def _collected(*args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "PAYGATE_CRASH_ROUNDS"}
    # Without hypothesis's plugin: the crash test uses none of it, and loading it was half
    # of each collection's time (about 4 of 8 s under load).
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "-p", "no:hypothesispytest", CRASH_TEST, *args],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 5), out.stdout + out.stderr  # 5: nothing selected
    return [line for line in out.stdout.splitlines() if "::" in line]


@pytest.mark.parametrize(("args", "rounds"), [
    pytest.param((), 3, id="default"),
    pytest.param(("-m", "slow"), 20, id="slow"),
    pytest.param(("-m", "slow and not browser"), 20, id="slow-and-not-browser"),
])
def test_rounds_follow_the_marker_selection(args: tuple[str, ...], rounds: int) -> None:
    ids = _collected(*args)
    assert len(ids) >= 3, ids  # every fault point, on every database
    assert all(f"[{rounds}-rounds-" in i for i in ids), ids


def test_the_fast_set_leaves_the_crash_test_out() -> None:
    assert _collected("-m", "not slow") == []
