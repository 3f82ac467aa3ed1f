"""The ``paygate`` command line as an operator runs it (a real subprocess)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
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
