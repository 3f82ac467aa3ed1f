"""Draw docs/images/performance-cpu-per-payment.png from two matrix result files.

    pip install matplotlib   # not a dependency of paygate; only this chart needs it
    .venv/bin/python docs/perf/chart.py docs/perf/results-before.json docs/perf/results-after.json \
        --labels "e35ead8 (session 1)" "after this pass" --out docs/images/performance-cpu-per-payment.png
    .venv/bin/python docs/perf/chart.py docs/perf/results-before-4676621.json \
        docs/perf/results-fourth-pass.json --labels "4676621 (start of pass 4)" "b3e199c" \
        --rows "pg-1w 0ms peak" "pg-1w create" "pg-1w status" --cpu database \
        --out docs/images/performance-fourth-pass.png

Left: CPU per operation (ms, lower is better) of the gateway (with the 1 ms target drawn
in) or of PostgreSQL (``--cpu database``) for each row. Right: operations per second.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = ["sqlite-1w 0ms peak", "pg-1w 0ms peak", "pg-2w 0ms peak",
        "sqlite-1w 50-150ms peak", "pg-1w 50-150ms peak", "pg-2w 50-150ms peak"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", nargs="+", default=ROWS, help="matrix rows to draw (default: the peaks)")
    parser.add_argument("--cpu", choices=("gateway", "database"), default="gateway")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(p.read_text()) for p in args.results]
    rows = [r for r in args.rows if all(r in run for run in runs)]
    fig, (cpu_ax, rate_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.8 / len(runs)
    for i, (run, label) in enumerate(zip(runs, args.labels)):
        xs = [x + i * width for x in range(len(rows))]
        cpu = [run[r]["cpu"][args.cpu]["msPerOperation"] for r in rows]
        rate = [run[r]["throughput"]["perSecond"] for r in rows]
        bars = cpu_ax.bar(xs, cpu, width, label=label)
        cpu_ax.bar_label(bars, fmt="%.1f", fontsize=7)
        bars = rate_ax.bar(xs, rate, width, label=label)
        rate_ax.bar_label(bars, fmt="%.0f", fontsize=7)
    for ax in (cpu_ax, rate_ax):
        ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(rows))])
        ax.set_xticklabels([r.replace(" peak", "").replace(" ", "\n") for r in rows], fontsize=8)
    who = "Gateway" if args.cpu == "gateway" else "PostgreSQL"
    if args.cpu == "gateway":
        cpu_ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="target: 1 ms per payment")
    cpu_ax.set_ylabel(f"{who} CPU ms per operation")
    cpu_ax.set_title(f"{who} CPU per operation (lower is better)")
    rate_ax.set_ylabel("operations/s (2 shared cores)")
    rate_ax.set_title("Throughput (closed loop, 32 in flight)")
    cpu_ax.legend(fontsize=8)
    rate_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
