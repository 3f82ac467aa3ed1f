"""The parent side of a run: start the worker processes, open the measured window, sample
CPU at its edges, show progress, and merge what the workers send back."""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from paygate_server.bench.cpu import CpuGroup, cpu_seconds_between, cpu_split_between, load_average
from paygate_server.bench.probe import MetricsProbe, processor_between
from paygate_server.bench.stats import LatencyHistogram
from paygate_server.bench.worker import WorkerConfig, worker_main

__all__ = ["RunPlan", "RunResult", "run", "split"]

READY_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 1.0


@dataclass
class RunPlan:
    base: WorkerConfig  # index, concurrency, rate, count and prepare are per-process below
    procs: int = 1
    concurrency: int = 32  # total virtual users (closed loop)
    rate: float = 0.0  # total flows/s (open loop); 0 = closed loop
    duration_s: float | None = 10.0
    count: int | None = None
    warmup_s: float = 2.0
    time_limit_s: float = 600.0
    prepare: int = 0  # total prepared intents (status/process scenarios)
    gateway_pids: list[int] = field(default_factory=list)
    simulator_pids: list[int] = field(default_factory=list)
    # A PostgreSQL server on this machine: the postmaster (its backends are its children).
    # Server-wide: anyone else's queries on it in the window count too.
    database_pids: list[int] = field(default_factory=list)
    probe: MetricsProbe | None = None


@dataclass
class RunResult:
    window_s: float
    histograms: dict[str, LatencyHistogram]
    errors: dict[str, int]
    outcomes: dict[str, int]
    requests: int
    completed: int
    failed_flows: int
    dropped: int
    exhausted: bool
    cpu_user_sys: dict[str, tuple[float, float] | None]
    cpu_pids: dict[str, list[int]]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    processor: dict[str, Any] | None = None


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class _Progress:
    def __init__(self, out: TextIO | None, procs: int) -> None:
        self.out = out
        self.tty = bool(out is not None and out.isatty())
        # Each process's latest (completed, requests, errors).
        self.latest: dict[int, tuple[int, int, int]] = {i: (0, 0, 0) for i in range(procs)}
        self.last_print = 0.0
        self.last_completed = 0
        self.last_t = time.monotonic()

    def show(self, phase: str, elapsed: float, gateway_cores: float | None, final: bool = False) -> None:
        if self.out is None:
            return
        now = time.monotonic()
        if not final and now - self.last_print < (PROGRESS_EVERY_S if self.tty else 5.0):
            return
        completed, requests, errors = map(sum, zip(*self.latest.values(), strict=True))
        rate = (completed - self.last_completed) / max(now - self.last_t, 1e-9)
        self.last_completed, self.last_t, self.last_print = completed, now, now
        cpu = f"  gateway CPU {gateway_cores * 100:.0f}%" if gateway_cores is not None else ""
        line = (f"[{elapsed:6.1f}s] {phase:<9} completed {completed:>8,}  now {rate:8,.0f}/s  "
                f"requests {requests:>9,}  errors {errors:>6,}{cpu}")
        if self.tty:
            self.out.write("\r" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def run(plan: RunPlan, progress_out: TextIO | None = sys.stderr) -> RunResult:
    ctx = multiprocessing.get_context("spawn")
    results_q: Any = ctx.Queue()
    counts = split(plan.count, plan.procs) if plan.count is not None else [None] * plan.procs
    prepared = split(plan.prepare, plan.procs)
    users = split(plan.concurrency, plan.procs)
    workers: list[Any] = []
    pipes: list[Any] = []
    for i in range(plan.procs):
        cfg = replace(plan.base, index=i, concurrency=users[i] if plan.rate <= 0 else 0,
                      rate=plan.rate / plan.procs if plan.rate > 0 else 0.0,
                      count=counts[i], prepare=prepared[i])
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=worker_main, args=(cfg, results_q, child_end), daemon=True,
                           name=f"paygate-bench-{i}")
        proc.start()
        workers.append(proc)
        pipes.append(parent_end)
    try:
        return _drive(plan, workers, pipes, results_q, progress_out)
    finally:
        for proc in workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()  # only our own worker processes, by handle
                proc.join(timeout=5)


def _next(results_q: Any, timeout: float) -> tuple[Any, ...] | None:
    try:
        return results_q.get(timeout=timeout)  # type: ignore[no-any-return]
    except queue_module.Empty:
        return None


def _drive(plan: RunPlan, workers: list[Any], pipes: list[Any], results_q: Any,
           progress_out: TextIO | None) -> RunResult:
    deadline = time.monotonic() + READY_TIMEOUT_S
    ready = 0
    while ready < plan.procs:
        msg = _next(results_q, 0.5)
        if msg is None:
            dead = [p for p in workers if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError("load generator processes did not start")
            continue
        if msg[0] == "failed":
            raise RuntimeError(f"load generator process {msg[1]} failed while preparing: {msg[2]}")
        if msg[0] == "ready":
            ready += 1

    groups = {
        "gateway": CpuGroup(plan.gateway_pids) if plan.gateway_pids else None,
        "simulator": CpuGroup(plan.simulator_pids) if plan.simulator_pids else None,
        "database": CpuGroup(plan.database_pids) if plan.database_pids else None,
        # Our own processes only: in --spawn mode the gateway and simulator are our
        # children too, so no descendant walk here.
        "loadgen": CpuGroup([os.getpid(), *(p.pid for p in workers)], include_children=False),
    }

    def sample_groups() -> dict[str, Any]:
        return {k: g.sample() for k, g in groups.items() if g is not None}

    began = time.monotonic()
    window_start = began + plan.warmup_s
    window_end = window_start + plan.duration_s if plan.duration_s is not None else None
    stop_at = window_end if window_end is not None else window_start + plan.time_limit_s
    for pipe in pipes:
        pipe.send((window_start, window_end, stop_at))

    progress = _Progress(progress_out, plan.procs)
    start_samples: dict[str, Any] = {}
    end_samples: dict[str, Any] = {}
    load_before = load_after = load_average()
    probe_start: dict[str, float] | None = None
    probe_end: dict[str, float] | None = None
    results: dict[int, dict[str, Any]] = {}
    last_gw: tuple[float, Any] | None = None
    gateway_cores: float | None = None
    while len(results) < plan.procs:
        now = time.monotonic()
        if not start_samples and now >= window_start:
            load_before = load_average()
            start_samples = sample_groups()
            probe_start = plan.probe.sample() if plan.probe else None
        if start_samples and not end_samples and window_end is not None and now >= window_end:
            end_samples = sample_groups()
            probe_end = plan.probe.sample() if plan.probe else None
            load_after = load_average()
        gw = groups["gateway"] if progress_out is not None else None  # --quiet: no extra /proc scans
        if gw is not None and (last_gw is None or now - last_gw[0] >= PROGRESS_EVERY_S):
            sample = gw.sample()
            if last_gw is not None:
                gateway_cores = cpu_seconds_between(last_gw[1], sample) / (now - last_gw[0])
            last_gw = (now, sample)
        phase = "warm-up" if now < window_start else (
            "measuring" if window_end is None or now < window_end else "draining")
        progress.show(phase, now - began, gateway_cores)
        wait = 0.2
        if not start_samples:
            wait = max(0.001, min(wait, window_start - now))
        elif window_end is not None and not end_samples:
            wait = max(0.001, min(wait, window_end - now))
        msg = _next(results_q, wait)
        if msg is None:
            if any(not p.is_alive() for i, p in enumerate(workers) if i not in results):
                raise RuntimeError("a load generator process died; see its output above")
            continue
        kind, index = msg[0], msg[1]
        if kind == "progress":
            progress.latest[index] = (msg[2], msg[3], msg[4])
        elif kind == "result":
            results[index] = msg[2]
            progress.latest[index] = (msg[2]["payments"], msg[2]["requests"], sum(msg[2]["errors"].values()))
        elif kind == "failed":
            raise RuntimeError(f"load generator process {index} failed: {msg[2]}")

    if not start_samples:  # everything ended inside the warm-up (tiny --count)
        start_samples = sample_groups()
        window_start = time.monotonic()
    if not end_samples:  # count-bounded: the window ends at the last completion
        end_samples = sample_groups()
        probe_end = plan.probe.sample() if plan.probe else None
        load_after = load_average()
        last = max((r["last_completion"] for r in results.values()), default=0.0)
        window_end = max(last, window_start + 1e-3)
    assert window_end is not None
    progress.show("done", time.monotonic() - began, gateway_cores, final=True)

    histograms: defaultdict[str, LatencyHistogram] = defaultdict(LatencyHistogram)
    errors: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for r in results.values():
        for name, wire in r["histograms"].items():
            histograms[name].merge(LatencyHistogram.from_wire(wire))
        errors.update(r["errors"])
        outcomes.update(r["outcomes"])
    cpu_user_sys = {name: None if group is None else cpu_split_between(start_samples[name], end_samples[name])
                    for name, group in groups.items()}
    cpu_pids = {name: [] if group is None else sorted(group.pids) for name, group in groups.items()}
    return RunResult(
        window_s=window_end - window_start, histograms=histograms, errors=errors, outcomes=outcomes,
        requests=sum(r["requests"] for r in results.values()),
        completed=sum(r["payments"] for r in results.values()),
        failed_flows=sum(r["failed_flows"] for r in results.values()),
        dropped=sum(r["dropped"] for r in results.values()),
        exhausted=any(r["exhausted"] for r in results.values()),
        cpu_user_sys=cpu_user_sys, cpu_pids=cpu_pids, load_before=load_before, load_after=load_after,
        processor=processor_between(probe_start, probe_end),
    )
