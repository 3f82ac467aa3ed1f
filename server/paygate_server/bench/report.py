"""The bench's results: one JSON-able dict (``--json``) and the table printed for people."""
from __future__ import annotations

from typing import Any

from paygate_server.bench.runner import RunResult

__all__ = ["ENDPOINT_ORDER", "build_report", "render_table"]

ENDPOINT_ORDER = ("create", "tokenize", "process", "capture", "status", "status_wait", "payment")
_UNITS = {"payment": "payments", "create": "intents created", "status": "status reads",
          "process": "process calls"}


def _cpu_entry(user_sys: tuple[float, float] | None, pids: list[int], window_s: float,
               completed: int) -> dict[str, Any]:
    if user_sys is None:
        return {"seconds": None, "userSeconds": None, "systemSeconds": None, "cores": None,
                "secondsPerOperation": None, "msPerOperation": None, "processes": pids}
    seconds = sum(user_sys)
    per = seconds / completed if completed else None
    return {
        "seconds": round(seconds, 3),
        "userSeconds": round(user_sys[0], 3),
        "systemSeconds": round(user_sys[1], 3),
        "cores": round(seconds / window_s, 3) if window_s > 0 else None,
        "secondsPerOperation": None if per is None else round(per, 6),
        "msPerOperation": None if per is None else round(per * 1000.0, 3),
        "processes": pids,
    }


def build_report(result: RunResult, *, scenario: str, context: dict[str, Any]) -> dict[str, Any]:
    window = result.window_s
    endpoints: dict[str, Any] = {}
    names = [n for n in ENDPOINT_ORDER if n in result.histograms]
    names += sorted(n for n in result.histograms if n not in ENDPOINT_ORDER)
    for name in names:
        stats = result.histograms[name].summary_ms()
        stats["errors"] = sum(n for key, n in result.errors.items() if key.startswith(f"{name}: "))
        stats["perSecond"] = round(result.histograms[name].count / window, 1) if window > 0 else None
        endpoints[name] = stats
    per_second = result.completed / window if window > 0 else 0.0
    cpu = {name: _cpu_entry(result.cpu_user_sys[name], result.cpu_pids[name], window, result.completed)
           for name in ("gateway", "simulator", "database", "loadgen")}
    return {
        "scenario": scenario,
        **context,
        "windowSeconds": round(window, 3),
        "throughput": {
            "unit": _UNITS.get(scenario, scenario),
            "completed": result.completed,
            "perSecond": round(per_second, 1),
            "failedFlows": result.failed_flows,
            "droppedByGenerator": result.dropped,
            "preparedExhausted": result.exhausted,
            "outcomes": dict(sorted(result.outcomes.items())),
        },
        "paymentsPerSecond": round(per_second, 1) if scenario == "payment" else None,
        "requests": {"total": result.requests,
                     "perSecond": round(result.requests / window, 1) if window > 0 else None},
        "endpoints": endpoints,
        "errors": dict(sorted(result.errors.items(), key=lambda kv: -kv[1])),
        "cpu": cpu,
        "cpuSecondsPerPayment": {name: entry["secondsPerOperation"] for name, entry in cpu.items()}
        if scenario == "payment" else None,
        "loadAverage": {"before": list(result.load_before), "after": list(result.load_after)},
        # The gateway's own share of a process call: its mean minus the mean processor call
        # the gateway timed itself (from its /metrics), when that was readable.
        "processorCalls": result.processor,
        "processGatewayMeanMs": _gateway_share(endpoints.get("process"), result.processor),
    }


def _gateway_share(process: dict[str, Any] | None, processor: dict[str, Any] | None) -> float | None:
    if not process or not processor or processor.get("meanMs") is None or process.get("meanMs") is None:
        return None
    return round(process["meanMs"] - processor["meanMs"], 3)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    t = report["throughput"]
    lines = []
    head = f"paygate bench: scenario {report['scenario']}"
    if report.get("captureMethod") == "manual" and report["scenario"] == "payment":
        head += " (manual capture: authorize, then capture)"
    if report.get("tokenize") is False and report["scenario"] == "payment":
        head += " (process takes the encryptedCard: no tokenize)"
    if report.get("mode") == "open":
        head += f", open loop at {report.get('targetRate')}/s"
    else:
        head += f", closed loop with {report.get('concurrency')} concurrent"
    head += f", {report.get('merchants')} merchants, {report.get('procs')} generator process(es)"
    lines.append(head)
    target = report.get("target", {})
    if target:
        lines.append("target: " + ", ".join(f"{k} {v}" for k, v in target.items() if v is not None))
    lb, la = report["loadAverage"]["before"], report["loadAverage"]["after"]
    lines.append(f"window {report['windowSeconds']:.1f} s after {report.get('warmupSeconds', 0)} s warm-up; "
                 f"load average {lb[0]:.2f} before, {la[0]:.2f} after")
    lines.append("")
    lines.append(f"{t['unit']}: {t['completed']:,} completed, {t['perSecond']:,.1f}/s"
                 + (f"; {t['failedFlows']:,} broke off" if t["failedFlows"] else "")
                 + (f"; {t['droppedByGenerator']:,} not started (generator backlog)" if t["droppedByGenerator"] else "")
                 + (f"; outcomes {t['outcomes']}" if t["outcomes"] else ""))
    lines.append("")
    lines.append(f"{'endpoint':<12} {'count':>9} {'per s':>9} {'mean ms':>9} {'p50 ms':>9} "
                 f"{'p95 ms':>9} {'p99 ms':>9} {'max ms':>9} {'errors':>7}")
    for name, e in report["endpoints"].items():
        label = "payment e2e" if name == "payment" else name
        lines.append(f"{label:<12} {e['count']:>9,} {_fmt(e['perSecond'], ',.1f'):>9} {_fmt(e['meanMs']):>9} "
                     f"{_fmt(e['p50Ms']):>9} {_fmt(e['p95Ms']):>9} {_fmt(e['p99Ms']):>9} "
                     f"{_fmt(e['maxMs']):>9} {e['errors']:>7,}")
    if report.get("processGatewayMeanMs") is not None:
        lines.append(f"process: the processor took {report['processorCalls']['meanMs']:.2f} ms per charge on average "
                     f"(gateway's /metrics), the gateway's own share {report['processGatewayMeanMs']:.2f} ms")
    lines.append("")
    per = "payment" if report["scenario"] == "payment" else "operation"
    lines.append(f"{'CPU':<12} {'seconds':>9} {'user':>7} {'system':>7} {'cores':>7} {'ms/' + per:>13}  processes")
    for name, c in report["cpu"].items():
        pids = ",".join(str(p) for p in c["processes"][:6]) or "(not measured)"
        if len(c["processes"]) > 6:
            pids += f",… ({len(c['processes'])} processes)"
        lines.append(f"{name:<12} {_fmt(c['seconds']):>9} {_fmt(c['userSeconds']):>7} {_fmt(c['systemSeconds']):>7} "
                     f"{_fmt(c['cores']):>7} {_fmt(c['msPerOperation'], '.3f'):>13}  {pids}")
    if report["errors"]:
        lines.append("")
        lines.append("errors:")
        for key, n in report["errors"].items():
            lines.append(f"  {n:>8,}  {key}")
    return "\n".join(lines)
