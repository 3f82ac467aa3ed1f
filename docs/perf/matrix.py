"""Run the benchmark matrix of docs/performance.md and write its rows as JSON + Markdown.

    .venv/bin/python docs/perf/matrix.py --out docs/perf/results.json [--only pg-1w] [--duration 15]

Each row is one ``paygate bench --spawn … --json`` run (its exact command is kept in the
output). PostgreSQL rows get a fresh database each (``dropdb``/``createdb`` of
``--pg-database`` on the local server). "half" rows run open-loop at half the rate the
matching "peak" row reached, which is what the latency target is defined against.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PG_SERVER = "postgresql://127.0.0.1:5432"
LATENCY = ["--processor-latency-ms", "50", "--processor-jitter-ms", "100"]


def _rows(pg_database: str) -> list[tuple[str, list[str], str | None]]:
    """(name, bench arguments, name of the peak row whose half rate it runs at)."""
    pg = ["--database-url", f"{PG_SERVER}/{pg_database}"]
    rows: list[tuple[str, list[str], str | None]] = []
    for db_name, db_args, workers in (("sqlite-1w", [], "1"), ("pg-1w", pg, "1"), ("pg-2w", pg, "2")):
        base = [*db_args, "--workers", workers]
        rows.append((f"{db_name} 0ms peak", [*base, "--concurrency", "32"], None))
        rows.append((f"{db_name} 0ms half", base, f"{db_name} 0ms peak"))
        # 50–150 ms at the processor: 96 in flight, or Little's law caps the run, not the gateway.
        rows.append((f"{db_name} 50-150ms peak", [*base, *LATENCY, "--concurrency", "96"], None))
        rows.append((f"{db_name} 50-150ms half", [*base, *LATENCY], f"{db_name} 50-150ms peak"))
        for scenario in ("create", "status"):
            rows.append((f"{db_name} {scenario}", [*base, "--scenario", scenario, "--concurrency", "32"], None))
    return rows


def _fresh_pg(database: str) -> None:
    for sql in (f"DROP DATABASE IF EXISTS {database}", f"CREATE DATABASE {database}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-d", "postgres", "-qc", sql], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", action="append", default=[], help="run rows whose name contains this")
    parser.add_argument("--again", action="store_true", help="re-run rows already in --out")
    parser.add_argument("--duration", default="15")
    parser.add_argument("--warmup", default="3")
    parser.add_argument("--pg-database", default="paygate_bench")
    args = parser.parse_args()

    paygate = str(Path(sys.executable).with_name("paygate"))
    results: dict[str, dict] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name, bench_args, half_of in _rows(args.pg_database):
        if args.only and not any(part in name for part in args.only):
            continue
        if name in results and not args.again:
            continue  # already measured into --out: resume where a previous run stopped
        extra = list(bench_args)
        if half_of is not None:
            peak = results.get(half_of)
            if peak is None:
                print(f"skip {name}: run {half_of!r} first", file=sys.stderr)
                continue
            rate = max(1.0, round(peak["throughput"]["perSecond"] / 2, 1))
            extra += ["--rate", str(rate)]
        if "--database-url" in extra:
            _fresh_pg(args.pg_database)
        command = [paygate, "bench", "--spawn", "--duration", args.duration, "--warmup", args.warmup,
                   "--quiet", "--json", *extra]
        print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        report = json.loads(done.stdout)
        report["row"] = name
        results[name] = report
        args.out.write_text(json.dumps(results, indent=1))
        print(summary_line(report), file=sys.stderr, flush=True)
    print(markdown(results))
    return 0


def summary_line(r: dict) -> str:
    cpu = r["cpu"]
    unit = r["throughput"]["unit"]
    return (f"   {r['throughput']['perSecond']:.1f} {unit}/s, gateway {cpu['gateway']['msPerOperation']:.2f} ms/op "
            f"({cpu['gateway']['cores']:.2f} cores), db {(cpu.get('database') or {}).get('msPerOperation') or 0:.2f} ms/op, "
            f"load {r['loadAverage']['before'][0]}→{r['loadAverage']['after'][0]}")


def _pcts(endpoint: dict | None) -> str:
    if not endpoint:
        return "–"
    return f"{endpoint['p50Ms']:.1f} / {endpoint['p95Ms']:.1f} / {endpoint['p99Ms']:.1f}"


def markdown(results: dict[str, dict]) -> str:
    payment = ["| run | payments/s | gateway CPU ms/payment | gateway cores | PostgreSQL ms/p | simulator ms/p "
               "| generator ms/p | create p50/p95/p99 ms | process p50/p95/p99 ms | status p50/p95/p99 ms "
               "| gateway share of process, mean ms | load avg before→after |",
               "|" + "---|" * 12]
    single = ["| run | operations/s | gateway CPU ms/op | PostgreSQL ms/op | p50 / p95 / p99 ms | load avg |",
              "|" + "---|" * 6]
    for name, r in results.items():
        cpu = r["cpu"]
        load = f"{r['loadAverage']['before'][0]}→{r['loadAverage']['after'][0]}"
        db = (cpu.get("database") or {}).get("msPerOperation")
        db_text = f"{db:.1f}" if db is not None else "–"
        if r["scenario"] == "payment":
            ep = r["endpoints"]
            share = r.get("processGatewayMeanMs")
            payment.append(
                f"| {name} | {r['throughput']['perSecond']:.1f} | {cpu['gateway']['msPerOperation']:.2f} "
                f"| {cpu['gateway']['cores']:.2f} | {db_text} | {cpu['simulator']['msPerOperation']:.2f} "
                f"| {cpu['loadgen']['msPerOperation']:.2f} | {_pcts(ep.get('create'))} | {_pcts(ep.get('process'))} "
                f"| {_pcts(ep.get('status'))} | {'–' if share is None else f'{share:.1f}'} | {load} |")
        else:
            ep = r["endpoints"].get(r["scenario"])
            single.append(f"| {name} | {r['throughput']['perSecond']:.1f} | {cpu['gateway']['msPerOperation']:.2f} "
                          f"| {db_text} | {_pcts(ep)} | {load} |")
    return "\n".join(payment) + "\n\n" + "\n".join(single) + "\n"


if __name__ == "__main__":
    sys.exit(main())
