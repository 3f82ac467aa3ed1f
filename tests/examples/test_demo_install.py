"""``make demo`` installs only what the demo runs (the ``server`` extra); ``make test`` adds
PostgreSQL, NATS and the test toolchain. The slow test proves the first half for real: a
virtualenv made by ``make demo-venv`` alone runs the demo and takes a payment."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.examples.demo_process import REPO, running_demo

TEST_ONLY = ("postgres", "nats", "test")


def _make_dry_run(target: str, venv: Path) -> list[str]:
    """The pip commands ``make TARGET`` would run for a virtualenv that does not exist yet."""
    out = subprocess.run(
        ["make", "-n", "-C", str(REPO), target, f"VENV={venv}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    return [line for line in out.splitlines() if "pip install" in line and "-e" in line]


def _extras(pip_lines: list[str]) -> set[str]:
    found: set[str] = set()
    for line in pip_lines:
        for group in re.findall(r'\.\[([a-z,]+)\]', line):
            found |= set(group.split(","))
    return found


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_the_server_alone_and_make_test_the_rest(tmp_path: Path) -> None:
    assert _extras(_make_dry_run("demo", tmp_path / "v")) == {"server"}
    assert _extras(_make_dry_run("test", tmp_path / "v")) >= {"server", *TEST_ONLY}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_demo_runs_in_a_virtualenv_with_only_the_server_extra(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(["make", "-C", str(REPO), "demo-venv", f"VENV={venv}"],
                   check=True, capture_output=True, timeout=600)
    python = venv / "bin" / "python"
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    names = {d["name"].lower() for d in json.loads(listed)}
    assert not names & {"pytest", "moto", "playwright", "asyncpg", "nats-py", "jwcrypto", "hypothesis"}
    with running_demo(tmp_path / "paygate-data", python=str(python)) as demo:
        with httpx.Client(base_url=demo.shop, timeout=10) as shop:
            assert shop.get("/").status_code == 200
        with demo.sdk() as client:
            intent = client.payment_intents.create(amount=1999, currency="USD",
                                                   product_details={"sku": "tw-mug-12"})
            assert intent.status == "created"
