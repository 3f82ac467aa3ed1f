"""The ``paygate`` command line as an operator runs it (a real subprocess)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate_server.storage.migrate import head_revision
from tests.support.databases import another_database


def paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def empty_db(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    with another_database(database_url, tmp_path, migrated=False) as url:
        yield url


def test_operator_flow(empty_db: str, tmp_path: Path) -> None:
    env = {"PAYGATE_DATABASE_URL": empty_db, "PAYGATE_DATA_DIR": str(tmp_path / "data")}
    # Unmigrated: refused with a clear message, no traceback.
    r = paygate("merchants", "create", "--name", "Shop", env=env)
    assert r.returncode == 2 and "paygate db upgrade" in r.stderr and "Traceback" not in r.stderr

    r = paygate("db", "upgrade", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"from": None, "to": head_revision()}
    assert "current" in paygate("db", "upgrade", env=env).stdout

    key_file = tmp_path / "data" / "master.key"
    r = paygate("merchants", "create", "--name", "Shop", "--origin", "https://shop.example",
                "--origin", "http://localhost:3000/", "--json", env=env)
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert set(created) == {"merchantId", "apiKey", "signingSecret"}
    assert created["apiKey"].startswith("pk_test_") and created["signingSecret"].startswith("sk_test_")
    # The master key file was created private; the secret is not stored in the clear.
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    if empty_db.startswith("sqlite"):
        raw = Path(empty_db.removeprefix("sqlite:///")).read_bytes()
        assert created["signingSecret"].encode() not in raw

    r = paygate("keys", "create", "--merchant", created["merchantId"], "--json", env=env)
    second = json.loads(r.stdout)
    assert second["merchantId"] == created["merchantId"] and second["apiKey"] != created["apiKey"]
    r = paygate("keys", "revoke", "--merchant", created["merchantId"], "--key", created["apiKey"], env=env)
    assert r.returncode == 0
    r = paygate("keys", "revoke", "--merchant", created["merchantId"], "--key", created["apiKey"], env=env)
    assert r.returncode == 2 and "no active key" in r.stderr

    for bad in (["merchants", "create", "--name", "X", "--origin", "ftp://x"],
                ["merchants", "create", "--name", "X", "--origin", "https://x/path"],
                ["merchants", "create", "--name", "X", "--origin", "https://*.shop.example"],  # no frame takes it
                ["merchants", "create", "--name", ""],
                ["keys", "create", "--merchant", "mer_nope"]):
        r = paygate(*bad, env=env)
        assert r.returncode == 2 and r.stderr.startswith("paygate: ") and "Traceback" not in r.stderr, r.stderr


def test_bad_master_key_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    env = {"PAYGATE_DATABASE_URL": database_url, "PAYGATE_MASTER_KEY": "not-a-key"}
    r = paygate("merchants", "create", "--name", "Shop", env=env)
    assert r.returncode == 2 and "PAYGATE_MASTER_KEY" in r.stderr


def test_serve_refuses_unmigrated_database(tmp_path: Path) -> None:
    env = {"PAYGATE_DATA_DIR": str(tmp_path)}
    r = paygate("serve", "--port", "0", env=env)
    assert r.returncode == 2 and "paygate db upgrade" in r.stderr


def test_without_configuration_the_data_lives_in_paygate_data_under_the_working_folder(tmp_path: Path) -> None:
    """SPEC §9: PAYGATE_DATABASE_URL defaults to an SQLite file in PAYGATE_DATA_DIR, which
    defaults to ./paygate-data; with no PAYGATE_MASTER_KEY a key file is made there (0600)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    for args in (("db", "upgrade"), ("merchants", "create", "--name", "Shop", "--json")):
        done = subprocess.run([sys.executable, "-m", "paygate_server", *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    data = tmp_path / "paygate-data"
    assert (data / "paygate.db").is_file() and stat.S_IMODE((data / "master.key").stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(data / "paygate.db")) as conn:
        assert conn.execute("SELECT id FROM merchants").fetchall() == [(json.loads(done.stdout)["merchantId"],)]


def test_history_retention_defaults_to_seven_days() -> None:
    from paygate_server.config import Settings

    # SPEC §8: PAYGATE_HISTORY_RETENTION_S, default 7 days.
    assert Settings.from_env({}).history_retention_s == 7 * 24 * 3600
    assert Settings.from_env({"PAYGATE_HISTORY_RETENTION_S": "60"}).history_retention_s == 60


def test_a_history_prune_interval_of_0_turns_the_gateways_pruning_off(tmp_path: Path) -> None:
    """docs/operations.md and docs/history.md: PAYGATE_HISTORY_PRUNE_INTERVAL_S=0 is "never"
    (run `paygate history prune`). Once every command refused it ("must be more than 0")."""
    from paygate_server.cdc import extension
    from paygate_server.config import Settings

    r = paygate("db", "upgrade", env={"PAYGATE_HISTORY_PRUNE_INTERVAL_S": "0", "PAYGATE_DATA_DIR": str(tmp_path),
                                      "PAYGATE_DATABASE_URL": ""})
    assert r.returncode == 0, r.stderr
    settings = Settings.from_env({"PAYGATE_HISTORY_PRUNE_INTERVAL_S": "0", "PAYGATE_RELAY": "0"})

    class Gateway:  # what background_tasks reads: no relay, so only the pruning could start
        pass

    gateway = Gateway()
    gateway.settings = settings  # type: ignore[attr-defined]
    assert extension.background_tasks(gateway) == []  # type: ignore[arg-type]


def test_the_floors_of_settings_that_parse_but_make_no_sense_are_taken() -> None:
    """Each floor itself is a value that works (tests/server/test_cli_errors.py has what is
    refused below and above them): the suite's own fastest schedules among them."""
    from paygate_server.config import Settings

    settings = Settings.from_env({
        "PAYGATE_RECONCILE_SCHEDULE_S": "0.05,0.3,1", "PAYGATE_WEBHOOK_RETRY_SCHEDULE_S": "0.05",
        "PAYGATE_CONSOLE_SESSION_TTL_S": "60", "PAYGATE_CONSOLE_IDLE_TIMEOUT_S": "60",
        "PAYGATE_TIMESTAMP_TOLERANCE_S": "1"})
    assert settings.reconcile_schedule_s == (0.05, 0.3, 1.0) and settings.webhook_retry_schedule_s == (0.05,)
    assert (settings.console_session_ttl_s, settings.console_idle_timeout_s, settings.timestamp_tolerance_s) == (60, 60, 1)
    assert Settings.from_env({"PAYGATE_TIMESTAMP_TOLERANCE_S": "300"}).timestamp_tolerance_s == 300


@contextlib.contextmanager
def running_paygate_simulator(env: dict[str, str]) -> Iterator[str]:
    """`paygate simulator --port P` as an operator starts it, on a free port, answering: its URL."""
    import httpx

    from tests.support.eventually import eventually_sync

    with socket.socket() as probe:  # a free port, asked of the OS
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-m", "paygate_server", "simulator", "--port", str(port)],
                             env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False
        eventually_sync(healthy, until=bool, timeout=30, what="paygate simulator answering")
        yield base
    finally:
        child.terminate()
        child.wait(timeout=30)


def test_paygate_simulator_keeps_its_store_where_paygate_simulator_store_says(tmp_path: Path) -> None:
    """docs/simulator.md, docs/operations.md: `--store / PAYGATE_SIMULATOR_STORE`. Once
    `paygate simulator` ignored the variable (only `python -m paygate_server.simulator` read
    it) and kept its charges in $PAYGATE_DATA_DIR/simulator.db."""
    store = tmp_path / "elsewhere" / "sim.db"
    store.parent.mkdir()
    with running_paygate_simulator({"PAYGATE_DATA_DIR": str(tmp_path / "data"), "PAYGATE_SIMULATOR_STORE": str(store)}):
        assert store.is_file() and not (tmp_path / "data" / "simulator.db").exists()


def test_paygate_simulator_serves_on_its_port_and_1018_outlasts_the_gateways_processor_timeout(tmp_path: Path) -> None:
    """SPEC §7/§9: `paygate simulator --port` as an operator starts it (the other tests start
    `python -m paygate_server.simulator` with a short --slow-card-delay): its store goes to
    the data folder, and card 4000000000001018 is recorded at once but answered later than
    the gateway's default processor timeout."""
    import httpx

    from paygate_server.config import Settings
    from paygate_server.simulator.testing import TestCards, charge_payload

    with running_paygate_simulator({"PAYGATE_DATA_DIR": str(tmp_path / "data")}) as base:
        assert (tmp_path / "data" / "simulator.db").is_file()
        payload = charge_payload(TestCards.SLOW_ANSWER)
        gateway_waits_s = Settings().processor_timeout_s
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/v1/charges", json=payload, timeout=httpx.Timeout(5.0, read=gateway_waits_s + 0.5))
        recorded = httpx.get(f"{base}/v1/charges/{payload['reference']}", timeout=5)
        assert recorded.status_code == 200 and recorded.json()["status"] == "approved"
