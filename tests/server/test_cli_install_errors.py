"""A ``paygate`` installed without what a command needs (the docs walk-through): the SDK
alone (`pip install .` installs the ``paygate`` script too) or the gateway without the
PostgreSQL driver (`make demo`'s virtualenv) answers in one line saying what to install,
never a ModuleNotFoundError traceback.

A missing package is simulated in a fresh interpreter by ``sys.modules[name] = None``,
which makes ``import name`` raise ModuleNotFoundError as an absent package does."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.server.test_cli_errors import assert_one_line

REPO = Path(__file__).resolve().parents[2]


def console_script_target() -> tuple[str, str]:
    """The module and function pyproject.toml installs as the ``paygate`` script."""
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["paygate"]
    module, function = target.split(":")
    return module, function


def run_without(missing: str, program: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    code = f"import sys; sys.modules[{missing!r}] = None\n{program}"
    return subprocess.run([sys.executable, "-c", code], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("program", [
    "import importlib; sys.exit(getattr(importlib.import_module({module!r}), {function!r})(['--help']))",
    "import runpy; sys.argv = ['paygate', '--help']; runpy.run_module('paygate_server', run_name='__main__')",
], ids=["console-script", "python-m"])
def test_the_command_without_the_gateways_dependencies_says_what_to_install(program: str) -> None:
    module, function = console_script_target()
    result = run_without("orjson", program.format(module=module, function=function))
    assert_one_line(result, "not installed", "'orjson'", 'pip install ".[server]"')


def test_a_postgresql_url_without_the_driver_says_what_to_install(tmp_path: Path) -> None:
    module, function = console_script_target()
    program = f"from {module} import {function}; sys.exit({function}(['reconcile', '--once']))"
    result = run_without("asyncpg", program, env={
        "PAYGATE_DATA_DIR": str(tmp_path), "PAYGATE_DATABASE_URL": "postgresql://paygate:pw@127.0.0.1:1/paygate"})
    line = assert_one_line(result, "PAYGATE_DATABASE_URL", "asyncpg", '".[server,postgres]"')
    assert "pw" not in line
