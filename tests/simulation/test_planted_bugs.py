"""The simulation finds known bugs: each plant (paygate_server/simulation/plants.py) undoes
one rule of the payment core, and some seed among the first N must report a violation,
with the one-line command that replays it — and the replay must show it again."""
from __future__ import annotations

import pytest

from paygate_server.simulation.runner import replay_command, run_one, run_seeds

# plant → at most this many seeds searched (docs/reliability.md has where each was found).
WITHIN = {
    "unknown-is-failure": 200,
    "early-never-received": 2000,
    "offset-before-events": 400,
    "no-answer-is-delivered": 200,
    "abandoned-claim-run-again": 200,
    "spent-token-retry-in-progress": 200,
}
# Small chunks: the search stops at the first chunk with a violation (unknown-is-failure has
# one at seed 0: 25 seeds run, not 100).
CHUNK = 25


@pytest.mark.parametrize("plant", sorted(WITHIN))
def test_the_simulation_finds_a_planted_bug(plant: str) -> None:
    for start in range(0, WITHIN[plant], CHUNK):  # from seed 0, a chunk at a time, until found
        summary = run_seeds(range(start, start + CHUNK), plant=plant)
        if summary.failing_seeds:
            break
    assert summary.failing_seeds > 0, f"{plant}: no violation in {WITHIN[plant]} seeds"
    seed, found = summary.failures[0]
    command = replay_command(seed, plant)
    print(f"{plant}: {summary.failing_seeds}/{summary.seeds} seeds, first {seed}: {found[0]}\n  {command}")
    assert command == f"paygate simulate --seed {seed} --plant {plant} --trace"
    replayed = run_one(seed, plant)
    assert replayed.violations == found
    assert any(line.split(maxsplit=1)[1].startswith("VIOLATION") for line in replayed.trace)
    assert run_one(seed).violations == []  # the same seed without the bug is clean


def test_a_key_whose_first_phase_committed_unseen_before_a_crash_is_still_checked() -> None:
    # Seed 56: op 4's payment commits its attempt and claim, and the crash falls before the
    # store's call returns to the request — the watcher never saw it begin. Its retry past
    # the lock timeout is then the key's only send the watcher sees; with the plant it is
    # answered 409 intent_state_conflict. The key's row (still in_progress after the crash)
    # records what was begun, so that answer is a violation, not a key with nothing begun.
    clean = run_one(56)
    assert any("op 4 began charge" in line and "unseen" in line for line in clean.trace), \
        "seed 56 no longer crashes between op 4's commit and its return: pick another seed"
    assert clean.violations == []
    planted_run = run_one(56, "abandoned-claim-run-again")
    assert any(v.startswith("key sim-op-4: send 2 answered 409 intent_state_conflict") for v in planted_run.violations), \
        planted_run.violations
