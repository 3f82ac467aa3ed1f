"""``paygate simulate``: run the deterministic simulation (docs/reliability.md).

``--seeds N`` runs seeds 0..N-1 (from ``--start``), ``--seed S`` one seed; exit status 1
when any seed breaks an invariant, with the seed and the command that replays it.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from paygate_server.cli import CommandError
from paygate_server.config import Settings
from paygate_server.simulation.plant_names import PLANT_NAMES

if TYPE_CHECKING:
    from paygate_server.simulation.runner import Summary

# The simulation (the whole gateway core) is imported when it runs: `paygate --help`
# imports this module too.

__all__ = ["add_commands"]

MAX_SEEDS = 100_000_000


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 0 <= number <= MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"must be 0 to {MAX_SEEDS}")
    return number


def cmd_simulate(args: argparse.Namespace, _settings: Settings) -> None:
    if args.seed is not None and (args.seeds is not None or args.start):
        raise CommandError("--seed runs one seed: give it alone, or --seeds N [--start K]")
    if args.trace and args.seed is None:
        raise CommandError("--trace needs --seed S (one seed's history)")
    if args.jobs < 1 or args.jobs > 64:
        raise CommandError("--jobs must be 1 to 64")
    from paygate_server.simulation.runner import Summary, run_one, run_seeds

    digest = None
    if args.seed is not None:
        result = run_one(args.seed, args.plant)
        summary = Summary()
        summary.add(result)
        digest = result.digest
        if args.trace and not args.json:
            print("\n".join(result.trace))
    else:
        count = 1000 if args.seeds is None else args.seeds
        if count == 0:
            raise CommandError("--seeds must be at least 1")
        summary = run_seeds(range(args.start, args.start + count), jobs=args.jobs, plant=args.plant)
    _report(summary, args, digest)
    if summary.failing_seeds:
        raise SystemExit(1)


def _report(summary: Summary, args: argparse.Namespace, digest: str | None) -> None:
    from paygate_server.simulation.runner import replay_command

    per_seed_ms = 1000 * summary.elapsed_s / summary.seeds if summary.seeds and summary.elapsed_s else 0.0
    failures: list[dict[str, Any]] = [{"seed": seed, "violations": found, "replay": replay_command(seed, args.plant)}
                for seed, found in summary.failures]
    if args.json:
        print(json.dumps({"seeds": summary.seeds, "steps": summary.steps, "histories": summary.histories, "events": summary.events,
                          "faults": dict(sorted(summary.faults.items())), "violations": summary.failing_seeds,
                          "failures": failures, "plant": args.plant, "elapsedS": round(summary.elapsed_s, 3),
                          **({"digest": digest} if digest else {})}))
        return
    print(f"seeds run: {summary.seeds}" + (f" in {summary.elapsed_s:.1f} s ({per_seed_ms:.0f} ms a seed, "
                                           f"{args.jobs} process{'es' if args.jobs > 1 else ''})"
                                           if summary.elapsed_s else ""))
    print(f"steps: {summary.steps}")
    print("faults injected: " + (", ".join(f"{kind} {n}" for kind, n in sorted(summary.faults.items())) or "none"))
    print(f"histories checked: {summary.histories}")
    print(f"webhook events checked: {summary.events}")
    if digest:
        print(f"history digest: {digest}")
    print(f"violations: {summary.failing_seeds} seed(s)")
    for failure in failures:
        print(f"  seed {failure['seed']}: {failure['violations'][0]}"
              + (f" (+{len(failure['violations']) - 1} more)" if len(failure['violations']) > 1 else ""))
        print(f"    replay: {failure['replay']}")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("simulate", help="run the deterministic simulation of the payment core "
                                        "(seeds, faults, crashes, invariants)")
    p.add_argument("--seeds", type=_count, metavar="N", help="run N seeds (default 1000)")
    p.add_argument("--start", type=_count, default=0, metavar="K", help="the first seed of --seeds (default 0)")
    p.add_argument("--seed", type=_count, metavar="S", help="run seed S alone (a replay)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes to run seeds in (default: 2, or 1 on one core)")
    p.add_argument("--plant", choices=sorted(PLANT_NAMES), help="plant a known bug (the simulation must find it)")
    p.add_argument("--trace", action="store_true", help="with --seed: print the seed's whole history")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_simulate)
