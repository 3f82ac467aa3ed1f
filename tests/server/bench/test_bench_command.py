"""``paygate bench --spawn``: a short real run (SQLite), its JSON, and a cross-check of the
payments it reports against the gateway's database and the processor's records."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paygate_server.bench import command
from paygate_server.bench.report import render_table
from paygate_server.cli import build_parser
from paygate_server.intents import schemas

ENDPOINT_FIELDS = {"count", "perSecond", "meanMs", "p50Ms", "p95Ms", "p99Ms", "maxMs", "errors"}


def _paygate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def test_spawned_bench_reports_payments_that_really_happened(tmp_path: Path) -> None:
    done = _paygate("bench", "--spawn", "--data-dir", str(tmp_path), "--duration", "3", "--warmup", "0.5",
                    "--merchants", "2", "--concurrency", "8", "--jwe-pool", "4", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["scenario"] == "payment" and report["mode"] == "closed"
    assert report["target"]["database"] == "sqlite" and report["target"]["workers"] == 1
    completed = report["throughput"]["completed"]
    assert completed > 0 and report["paymentsPerSecond"] > 0
    assert report["throughput"]["outcomes"] == {"succeeded": completed}
    assert report["errors"] == {}
    assert report["tokenize"] is True  # SPEC §10: create → tokenize → process → status until final
    for name in ("create", "tokenize", "process", "status", "payment"):
        assert ENDPOINT_FIELDS <= report["endpoints"][name].keys()
        e = report["endpoints"][name]
        assert e["count"] >= completed and e["p50Ms"] <= e["p95Ms"] <= e["p99Ms"] <= e["maxMs"]
    for group in ("gateway", "simulator", "loadgen"):
        cpu = report["cpu"][group]
        assert cpu["seconds"] > 0 and cpu["processes"], group
        assert report["cpuSecondsPerPayment"][group] == pytest.approx(cpu["seconds"] / completed, rel=0.01)
    assert len(report["loadAverage"]["before"]) == 3
    _assert_table_states(report)

    # Every payment the gateway calls succeeded was charged exactly once at the processor,
    # and the window's count is part of them (warm-up and drain payments succeed too).
    with sqlite3.connect(tmp_path / "paygate.db") as db:
        succeeded = db.execute("SELECT count(*) FROM payment_intents WHERE status = 'succeeded'").fetchone()[0]
        merchants = {r[0] for r in db.execute("SELECT DISTINCT merchant_id FROM payment_intents")}
        # Each paid through a checkout token: tokenized once, its vaulted card used once.
        tokenized = db.execute("SELECT count(*) FROM payment_intents p JOIN checkout_limits c ON c.intent_id = p.id"
                               " WHERE p.status = 'succeeded' AND c.tokenizations = 1").fetchone()[0]
        used = db.execute("SELECT count(DISTINCT intent_id) FROM vault_cards WHERE used_at IS NOT NULL").fetchone()[0]
    with sqlite3.connect(tmp_path / "simulator.db") as sim:
        approved = sim.execute("SELECT count(*) FROM charges WHERE status = 'approved'").fetchone()[0]
        per_intent = sim.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM charges GROUP BY payment_intent_id)").fetchone()[0]
    assert succeeded == approved >= completed
    assert tokenized == used == succeeded
    assert per_intent == 1
    assert merchants == set(report["merchantIds"]) and len(merchants) == 2  # SPEC §10: many concurrent merchants


def _assert_table_states(report: dict[str, Any]) -> None:
    """SPEC §10: the table (what ``paygate bench`` prints without ``--json``) states the same
    figures as the JSON — payments/s, each endpoint's p50/p95/p99 and errors, and the
    gateway's CPU per payment."""
    table = render_table(report)
    assert f"{report['throughput']['perSecond']:,.1f}/s" in table
    header = next(line for line in table.splitlines() if line.startswith("endpoint"))
    assert header.split() == ["endpoint", "count", "per", "s", "mean", "ms", "p50", "ms", "p95", "ms", "p99", "ms",
                              "max", "ms", "errors"]
    for name, e in report["endpoints"].items():
        label = "payment e2e" if name == "payment" else name
        [row] = [line for line in table.splitlines() if line.startswith(label + " ")]
        cells = row[len(label):].split()
        assert cells[3:6] == [f"{e['p50Ms']:.2f}", f"{e['p95Ms']:.2f}", f"{e['p99Ms']:.2f}"], (name, row)
        assert cells[-1] == f"{e['errors']:,}", (name, row)
    [gateway] = [line for line in table.splitlines() if line.startswith("gateway ")]
    assert "ms/payment" in table and f"{report['cpu']['gateway']['msPerOperation']:.3f}" in gateway.split()


def test_bench_with_manual_capture_authorizes_then_captures(tmp_path: Path) -> None:
    done = _paygate("bench", "--spawn", "--data-dir", str(tmp_path), "--duration", "3", "--warmup", "0.5",
                    "--merchants", "2", "--concurrency", "8", "--jwe-pool", "4", "--capture-method", "manual",
                    "--encrypted-card", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    completed = report["throughput"]["completed"]
    assert report["captureMethod"] == "manual" and completed > 0
    assert report["tokenize"] is False and "tokenize" not in report["endpoints"]  # the JWE straight to process
    assert report["throughput"]["outcomes"] == {"succeeded": completed} and report["errors"] == {}
    assert report["endpoints"]["capture"]["count"] >= completed
    # Every succeeded payment is an authorization captured once at the processor (in full).
    with sqlite3.connect(tmp_path / "paygate.db") as db:
        succeeded = db.execute("SELECT count(*) FROM payment_intents WHERE status = 'succeeded'"
                               " AND capture_method = 'manual' AND amount_received = amount").fetchone()[0]
    with sqlite3.connect(tmp_path / "simulator.db") as sim:
        captured = sim.execute("SELECT count(*) FROM captures WHERE status = 'captured'").fetchone()[0]
        automatic = sim.execute("SELECT count(*) FROM charges WHERE capture = 1").fetchone()[0]
    assert succeeded == captured >= completed and automatic == 0


def test_bench_refuses_targets_off_this_machine(tmp_path: Path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"merchantId": "mer_x", "apiKey": "pk_test_x", "signingSecret": "sk_test_x"}))
    done = _paygate("bench", "--gateway-url", "http://192.0.2.10:8080", "--credentials", str(creds),
                    "--duration", "1", timeout=30)
    assert done.returncode == 2
    assert "loopback" in done.stderr


def test_a_credentials_file_is_read_no_further_than_its_limit(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Once: read whole, so --credentials /dev/zero read until memory ran out.
    from paygate_server.bench import targets
    from paygate_server.cli import CommandError

    monkeypatch.setattr(targets, "MAX_CREDENTIALS_BYTES", 1024, raising=False)
    padded = tmp_path / "creds.json"
    padded.write_text('{"merchantId": "mer_x", "apiKey": "pk_test_x", "signingSecret": "sk_test_x"}' + " " * 2000)
    with pytest.raises(CommandError, match=f"^{padded} is larger than 1 KiB: not a credentials file$"):
        targets.load_credentials(padded)


@pytest.mark.parametrize(("args", "rule"), [
    (["--amount", "\u0663"], "from 1 to 99999999"), (["--amount", "1_0"], "from 1 to 99999999"),
    (["--amount", "0"], "from 1 to 99999999"), (["--amount", "100000000"], "from 1 to 99999999"),
    (["--workers", "\uff12"], "from 1 to 256"), (["--workers", "1_0"], "from 1 to 256"),
    (["--gateway-pid", "\u0663"], "from 1 to 4194304"), (["--simulator-pid", "-1"], "from 1 to 4194304"),
    (["--database-pid", "99999999999999999999"], "from 1 to 4194304"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_bench_numbers_are_ascii_digits_in_range(args: list[str], rule: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Once: type=int, which reads "٣" as 3 and "1_0" as 10 (and took any amount or PID).
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["bench", *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert f"argument {args[0]}: must be a whole number {rule}" in err, err


def test_bench_takes_the_largest_amount_and_pid() -> None:
    assert command.MAX_AMOUNT == schemas.MAX_AMOUNT  # the gateway's own bound
    args = build_parser().parse_args(["bench", "--amount", "99999999", "--workers", "256",
                                      "--gateway-pid", "4194304", "--gateway-pid", "1"])
    assert (args.amount, args.workers, args.gateway_pid) == (99_999_999, 256, [4_194_304, 1])
