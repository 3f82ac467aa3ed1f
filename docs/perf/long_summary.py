"""Totals of the long simulation run (docs/reliability.md, "The long run"): reads the pieces
``simulate_long.sh`` appended to long-simulation.jsonl and prints seeds, steps, histories,
webhook events, faults by kind and violations, overall and per commit.

    python docs/perf/long_summary.py [docs/perf/long-simulation.jsonl]
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

FIELDS = ("seeds", "steps", "histories", "events", "violations")


def main(path: Path) -> None:
    totals: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    per_commit: dict[str, Counter[str]] = defaultdict(Counter)
    covered: list[tuple[int, int]] = []
    failing: list[tuple[int, list[str], str]] = []
    for line in path.read_text().splitlines():
        piece = json.loads(line)
        report = piece["report"]
        covered.append((piece["start"], piece["start"] + piece["seeds"]))
        for name in FIELDS:
            totals[name] += report[name]
            per_commit[piece["commit"]][name] += report[name]
        faults.update(report["faults"])
        failing += [(f["seed"], f["violations"], piece["commit"]) for f in report["failures"]]
    covered.sort()
    print(f"pieces {len(covered)}, seeds {covered[0][0]:,}..{covered[-1][1] - 1:,}" if covered else "no pieces")
    gaps = [(a[1], b[0]) for a, b in zip(covered, covered[1:]) if b[0] > a[1]]
    if gaps:
        print("not run:", ", ".join(f"{a:,}..{b - 1:,}" for a, b in gaps))
    print(" · ".join(f"{name} {totals[name]:,}" for name in FIELDS))
    print(f"faults {sum(faults.values()):,}: " + " · ".join(f"{k} {v:,}" for k, v in faults.most_common()))
    for commit, figures in per_commit.items():
        print(f"  {commit}: " + " · ".join(f"{name} {figures[name]:,}" for name in FIELDS))
    for seed, violations, commit in failing:
        print(f"FAILING seed {seed} on {commit}: {violations}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("long-simulation.jsonl")))
