"""Totals of the long simulation run (docs/reliability.md, "The long run"): reads the pieces
``simulate_long.sh`` appended to long-simulation.jsonl and prints seeds, steps, histories,
webhook events, faults by kind and violations, overall and per commit.

    python docs/perf/long_summary.py [--table] [docs/perf/long-simulation.jsonl]

``--table``: the same figures as the rows of docs/reliability.md's long-run table.
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

FIELDS = ("seeds", "steps", "histories", "events", "violations")


def table(totals: Counter[str], faults: Counter[str], per_commit: dict[str, Counter[str]],
          covered: list[tuple[int, int]], failing: list[tuple[int, list[str], str]]) -> None:
    distinct = len({s for a, b in covered for s in range(a, b)})
    runs = sum(figures["seeds"] for figures in per_commit.values())
    span = f"{covered[0][0]:,}–{covered[-1][1] - 1:,}" if covered else "none"
    by_commit = " · ".join(f"`{c}` {f['seeds']:,}" for c, f in per_commit.items())
    print(f"| seeds run | {distinct:,} distinct of 1,000,000 ({span}); {runs:,} seed runs in all, by commit: {by_commit} |")
    print(f"| steps | {totals['steps']:,} |")
    print(f"| histories checked | {totals['histories']:,} |")
    print(f"| webhook events checked | {totals['events']:,} |")
    print(f"| faults injected | {sum(faults.values()):,}: " + " · ".join(f"{k} {v:,}" for k, v in faults.most_common()) + " |")
    seeds = ", ".join(f"{seed} on `{commit}`" for seed, _, commit in failing) or "none"
    print(f"| violations | {len(failing)} seed{'s' if len(failing) != 1 else ''}: {seeds} |")


def main(path: Path, as_table: bool = False) -> None:
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
    if as_table:
        table(totals, faults, per_commit, covered, failing)
        return
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
    args = [a for a in sys.argv[1:] if a != "--table"]
    main(Path(args[0]) if args else Path(__file__).with_name("long-simulation.jsonl"), "--table" in sys.argv[1:])
