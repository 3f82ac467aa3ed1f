"""``paygate bench``: argument parsing and the order of a run (target → JWEs → run → report)."""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paygate_server.bench.scenarios import SCENARIOS
from paygate_server.cli_parser import DAY_S, seconds, whole_number
from paygate_server.config import Settings
from paygate_server.currencies import MAX_AMOUNT

if TYPE_CHECKING:
    from paygate_server.bench.targets import Target

# The load generator (httpx, the workers, the report) is imported when a bench runs, not
# with this module: `paygate --help` imports it too.

__all__ = ["add_commands", "cmd_bench"]

DEFAULT_CARD = "4242424242424242"
#: Linux's largest PID (PID_MAX_LIMIT): the bench reads CPU times from /proc/<pid>.
MAX_PID = 2**22

EPILOG = """\
examples:
  paygate bench --spawn --duration 20                        # SQLite, 1 worker, all in a temp dir
  paygate bench --spawn --workers 2 --database-url postgresql://127.0.0.1/paygate_bench
  paygate bench --spawn --processor-latency-ms 100 --concurrency 64
  paygate bench --spawn --scenario create --rate 500 --duration 10   # open loop
  paygate bench --gateway-url http://127.0.0.1:8080 --simulator-url http://127.0.0.1:8081 \\
                --credentials paygate-data/demo-merchant.json         # against `paygate demo`
"""


def add_commands(sub: Any) -> None:
    p = sub.add_parser("bench", help="load generator: complete payments or one endpoint, with CPU accounting",
                       description="Drive the gateway with signed requests from many merchants and report "
                                   "throughput, latency percentiles, errors and CPU per payment (SPEC §10).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("target")
    g.add_argument("--spawn", action="store_true",
                   help="start a simulator and a gateway on loopback for this run (the default without --gateway-url)")
    g.add_argument("--workers", type=whole_number(1, 256), default=1, help="--spawn: gateway worker processes (default 1)")
    g.add_argument("--database-url", help="--spawn: the gateway's database (default a fresh SQLite file); "
                                          "otherwise: where to create merchants (with PAYGATE_MASTER_KEY)")
    g.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                   help="--spawn: extra environment for the gateway (repeatable), e.g. PAYGATE_RELAY=0")
    g.add_argument("--data-dir", type=Path, help="--spawn: keep databases and logs here (default a temp dir, removed)")
    g.add_argument("--gateway-url", help="a running gateway (loopback only)")
    g.add_argument("--simulator-url", help="its processor simulator (for --processor-latency-ms and its CPU)")
    g.add_argument("--gateway-pid", type=whole_number(1, MAX_PID), action="append", default=[],
                   help="gateway PIDs for CPU accounting (default: whoever listens on the gateway's port)")
    g.add_argument("--simulator-pid", type=whole_number(1, MAX_PID), action="append", default=[])
    g.add_argument("--database-pid", type=whole_number(1, MAX_PID), action="append", default=[],
                   help="database server PIDs (default: a PostgreSQL server on loopback from --database-url)")
    g.add_argument("--credentials", type=Path, help="JSON file: merchant credentials (one object, a list, or one per line)")
    g.add_argument("--merchants", type=whole_number(1, 10_000), default=8, help="merchants to create (default 8)")
    w = p.add_argument_group("workload")
    w.add_argument("--scenario", choices=SCENARIOS, default="payment",
                   help="payment (create → process → status until final) or one endpoint")
    w.add_argument("--concurrency", type=whole_number(0, 100_000), default=32, help="closed loop: flows in flight (default 32)")
    w.add_argument("--rate", type=seconds(1_000_000.0), default=0.0, help="open loop: flows started per second (instead of --concurrency)")
    w.add_argument("--duration", type=seconds(DAY_S, zero=False), help="measured seconds (default 10 unless --count)")
    w.add_argument("--count", type=whole_number(1, 1_000_000_000), help="measured flows (instead of, or as well as, --duration)")
    w.add_argument("--warmup", type=seconds(DAY_S), default=2.0, help="seconds of unmeasured load first (default 2)")
    w.add_argument("--time-limit", type=seconds(DAY_S, zero=False), default=600.0, help="hard bound on a --count run (default 600 s)")
    w.add_argument("--procs", type=whole_number(1, 256), default=1, help="load generator processes (default 1)")
    w.add_argument("--connections", type=whole_number(1, 100_000), default=512, help="open loop: connections per process at most")
    w.add_argument("--processor-latency-ms", type=whole_number(0, 600_000), help="set the simulator's latency for the run")
    w.add_argument("--processor-jitter-ms", type=whole_number(0, 600_000), default=0)
    w.add_argument("--card", action="append", help=f"card number(s) to pay with (default {DEFAULT_CARD})")
    w.add_argument("--jwe-pool", type=whole_number(1, 100_000), default=64, help="pre-made encryptedCard JWEs, reused round-robin")
    w.add_argument("--capture-method", choices=("automatic", "manual"), default="automatic",
                   help="payment scenario: manual authorizes, then captures (authorize + capture per payment)")
    w.add_argument("--encrypted-card", action="store_true",
                   help="payment scenario: process takes the JWE itself (the SDK's server-side encryption) instead "
                        "of a token from POST /checkout/v1/tokens (the hosted form's step)")
    w.add_argument("--amount", type=whole_number(1, MAX_AMOUNT), default=1999, help="minor units (default 1999)")
    w.add_argument("--currency", default="USD")
    w.add_argument("--no-idempotency-keys", action="store_true",
                   help="send POSTs without Idempotency-Key (the SDK always sends one)")
    w.add_argument("--prepare", type=whole_number(0, 100_000_000), help="status/process scenarios: intents made before the window")
    w.add_argument("--status-wait", type=whole_number(0, 3600), default=5, help="long-poll seconds while a payment is not final")
    w.add_argument("--request-timeout", type=seconds(DAY_S, zero=False), default=30.0)
    g.add_argument("--metrics-token", help="the gateway's PAYGATE_METRICS_TOKEN, to read its /metrics")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_bench)


def _check(args: argparse.Namespace) -> None:
    from paygate_server.cli import CommandError

    if args.spawn and args.gateway_url:
        raise CommandError("give either --spawn or --gateway-url, not both")
    if not args.gateway_url:
        args.spawn = True  # `paygate bench` alone (and `make bench`) runs a stack of its own
    if args.duration is None and args.count is None:
        args.duration = 10.0
    for name in ("duration", "warmup", "time_limit"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise CommandError(f"--{name.replace('_', '-')} must not be negative")
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    if args.procs < 1 or args.workers < 1 or args.merchants < 1 or args.jwe_pool < 1:
        raise CommandError("--procs, --workers, --merchants and --jwe-pool must be at least 1")
    if args.rate < 0 or (args.rate == 0 and args.concurrency < 1):
        raise CommandError("--concurrency must be at least 1 (or give --rate)")
    if any("=" not in item or not item.split("=", 1)[0] for item in args.gateway_env):
        raise CommandError("--gateway-env takes NAME=VALUE")
    if args.processor_latency_ms is not None and args.processor_latency_ms < 0:
        raise CommandError("--processor-latency-ms must not be negative")


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[Target]:
    from paygate_server.bench import targets
    from paygate_server.bench.cpu import pids_listening_on

    if args.spawn:
        extra_env = dict(item.split("=", 1) for item in args.gateway_env)
        with targets.spawned_stack(database_url=args.database_url, workers=args.workers,
                                   merchants=args.merchants if args.credentials is None else 1,
                                   data_dir=args.data_dir, extra_env=extra_env) as target:
            if args.credentials is not None:
                target.merchants = targets.load_credentials(args.credentials)
            yield target
        return
    gateway_port = targets.ensure_loopback(args.gateway_url)[1]
    simulator_port = targets.ensure_loopback(args.simulator_url)[1] if args.simulator_url else None
    if args.credentials is not None:
        merchants = targets.load_credentials(args.credentials)
    elif args.database_url:
        merchants = targets.create_merchants(args.merchants, {"PAYGATE_DATABASE_URL": args.database_url})
    else:
        raise targets.TargetError("give --credentials FILE, or --database-url to create merchants")
    gateway_pids = args.gateway_pid or pids_listening_on(gateway_port)
    simulator_pids = args.simulator_pid or (pids_listening_on(simulator_port) if simulator_port is not None else [])
    yield targets.Target(gateway_url=args.gateway_url.rstrip("/"), simulator_url=args.simulator_url,
                         merchants=merchants, gateway_pids=gateway_pids, simulator_pids=simulator_pids,
                         database_pids=args.database_pid or targets.database_server_pids(args.database_url))


def _prepare_count(args: argparse.Namespace) -> int:
    if args.scenario == "status":
        return args.prepare if args.prepare is not None else 200
    if args.scenario == "process":
        return args.prepare if args.prepare is not None else (args.count or 2000)
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> None:
    import httpx

    from paygate_server.bench import targets
    from paygate_server.bench.report import render_table
    from paygate_server.cli import CommandError

    _check(args)
    try:
        with _target(args) as target:
            report = _run(args, target)
    except targets.TargetError as exc:
        raise CommandError(str(exc)) from None
    except (RuntimeError, TimeoutError) as exc:  # a process that would not start or died
        raise CommandError(f"bench failed: {exc}") from None
    except httpx.HTTPError as exc:
        raise CommandError(f"bench failed: the gateway or simulator did not answer ({type(exc).__name__}: {exc})") from None
    if args.json:
        print(json.dumps(report))
    else:
        print(render_table(report))


def _run(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    from paygate_server.bench import targets
    from paygate_server.bench.probe import MetricsProbe
    from paygate_server.bench.report import build_report
    from paygate_server.bench.runner import RunPlan, run
    from paygate_server.bench.worker import WorkerConfig

    host, port = targets.ensure_loopback(target.gateway_url)
    cards = args.card or [DEFAULT_CARD]
    jwes = targets.make_jwe_pool(target.gateway_url, cards, args.jwe_pool) \
        if args.scenario in ("payment", "process") else []
    base = WorkerConfig(index=0, scenario=args.scenario, host=host, port=port, merchants=target.merchants, jwes=jwes,
                        max_connections=args.connections, amount=args.amount, currency=args.currency,
                        idempotency_keys=not args.no_idempotency_keys, request_timeout_s=args.request_timeout,
                        status_wait_s=args.status_wait, capture_method=args.capture_method,
                        tokenize=not args.encrypted_card)
    plan = RunPlan(base=base, procs=args.procs, concurrency=args.concurrency, rate=args.rate,
                   duration_s=args.duration, count=args.count, warmup_s=args.warmup,
                   time_limit_s=args.time_limit, prepare=_prepare_count(args),
                   gateway_pids=target.gateway_pids, simulator_pids=target.simulator_pids,
                   database_pids=target.database_pids,
                   probe=MetricsProbe(target.gateway_url, args.metrics_token))
    previous_faults = None
    if args.processor_latency_ms is not None:
        if not target.simulator_url:
            raise targets.TargetError("--processor-latency-ms needs --simulator-url")
        previous_faults = targets.set_processor_latency(target.simulator_url, args.processor_latency_ms,
                                                        args.processor_jitter_ms)
    try:
        result = run(plan, progress_out=None if args.quiet else sys.stderr)
    finally:
        if args.processor_latency_ms is not None and target.simulator_url:
            targets.restore_faults(target.simulator_url, previous_faults)
    context = {
        "command": "paygate " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("paygate")
        else shlex.join(sys.argv),
        "mode": "open" if args.rate > 0 else "closed",
        "concurrency": None if args.rate > 0 else args.concurrency,
        "targetRate": args.rate or None,
        "procs": args.procs,
        "merchants": len(target.merchants),
        "merchantIds": [m["merchantId"] for m in target.merchants],
        "warmupSeconds": args.warmup,
        "processorLatencyMs": args.processor_latency_ms,
        "processorJitterMs": args.processor_jitter_ms if args.processor_latency_ms is not None else None,
        "idempotencyKeys": not args.no_idempotency_keys,
        "jwePool": len(jwes),
        "captureMethod": args.capture_method,
        "tokenize": args.scenario == "payment" and not args.encrypted_card,
        "target": {"gateway": target.gateway_url, "simulator": target.simulator_url,
                   "database": target.database, "workers": target.workers,
                   "spawned": bool(args.spawn), "dataDir": str(args.data_dir) if args.data_dir else None,
                   "gatewayEnv": args.gateway_env or None},
    }
    return build_report(result, scenario=args.scenario, context=context)
