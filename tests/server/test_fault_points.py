"""``PAYGATE_FAULT_POINT`` names one of faults.POINTS or nothing starts: a misspelt point
never fired, so a crash test "passed" with nothing crashed (the relay's and the broker's
points were not even in the list)."""
from __future__ import annotations

from pathlib import Path

import pytest

from paygate_server.config import Settings
from paygate_server.faults import POINTS
from tests.server.test_cli_errors import assert_one_line, paygate

REFUSAL = f"paygate: PAYGATE_FAULT_POINT: not a crash point; the known ones: {', '.join(POINTS)}"


@pytest.mark.parametrize("value", [
    "after_capture_answerd",  # a misspelling
    "AFTER_ATTEMPT_COMMIT",  # names are compared as written
    " after_attempt_commit",
    "after_attempt_commit\nx",  # still one line
])
def test_serve_refuses_an_unknown_point_in_one_line_naming_the_known_ones(value: str, tmp_path: Path) -> None:
    r = paygate("serve", "--port", "0", env={"PAYGATE_FAULT_POINT": value, "PAYGATE_DATA_DIR": str(tmp_path)})
    assert assert_one_line(r) == REFUSAL
    assert not any(tmp_path.iterdir())  # refused before anything was made


def test_every_declared_point_is_taken_and_empty_is_none() -> None:
    assert {Settings.from_env({"PAYGATE_FAULT_POINT": p}).fault_point for p in POINTS} == set(POINTS)
    assert Settings.from_env({"PAYGATE_FAULT_POINT": ""}).fault_point is None  # test_relay_crash.py's "no fault"
    assert Settings.from_env({}).fault_point is None

