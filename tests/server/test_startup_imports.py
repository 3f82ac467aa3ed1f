"""What a process loads before it does anything: every ``paygate …`` command and every
process the tests spawn (the gateway, the simulator, CLI commands: hundreds per suite) pays
its imports first. SQLAlchemy's ORM (which its asyncio extension imports) and Alembic cost
about a second of CPU on a loaded machine; ``--help`` needs neither, the simulator uses no
database engine, and only ``paygate db upgrade`` runs migrations. Checked in a fresh
interpreter, by what is in ``sys.modules`` once the work is done."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paygate_server.storage.urls import database_kind

# Whole families: a submodule of one loads the package too.
DATABASE = ("sqlalchemy", "aiosqlite", "asyncpg", "alembic")


def loaded_after(program: str, *, env: dict[str, str] | None = None, tmp_path: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``program``."""
    out = tmp_path / "modules.json"
    code = (f"{program}\nimport json, sys\n"
            f"open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **(env or {})},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(out.read_text()))


def families(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == root or m.startswith(root + ".") for root in roots))


@pytest.mark.parametrize("argv", [["--help"], ["merchants", "create", "--help"], ["simulate", "--help"]],
                         ids=["help", "command-help", "simulate-help"])
def test_help_loads_no_database_code(argv: list[str], tmp_path: Path) -> None:
    """`paygate --help` (the console script's entry point) builds every command's parser:
    no command module may import the database engine, the gateway or Alembic to do it."""
    program = ("import contextlib, io\nfrom paygate_server.command import main\n"
               "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
               f"    main({argv!r})")
    modules = loaded_after(program, tmp_path=tmp_path)
    assert families(modules, DATABASE) == []
    assert "paygate_server.app" not in modules and "paygate_server.console.app" not in modules


def test_asking_whether_an_error_is_the_databases_loads_no_database_code(tmp_path: Path) -> None:
    """The command line's last except clause (cli.main) asks every error that reaches it
    whether it is the database's: for a command that never opened one, that costs nothing."""
    modules = loaded_after("from paygate_server.storage.opening import database_refusal\n"
                           "assert database_refusal(RuntimeError('x')) is None", tmp_path=tmp_path)
    assert families(modules, DATABASE) == []


def test_the_simulator_loads_no_database_engine_nor_the_gateway(tmp_path: Path) -> None:
    """The processor simulator (`python -m paygate_server.simulator`, the tests' and the
    demo's) keeps its state in its own SQLite file through the standard library, and needs
    the card-number helpers but not the gateway's card cryptography (cards/__init__.py)."""
    modules = loaded_after("import paygate_server.simulator.__main__\nimport paygate_server.simulator.server",
                           tmp_path=tmp_path)
    assert families(modules, (*DATABASE, "cryptography")) == []
    assert [m for m in modules if m == "paygate_server.app" or m.startswith("paygate_server.storage")] == []


def test_a_database_command_runs_no_migration_code(fresh_database_url: str, tmp_path: Path) -> None:
    """A command on a migrated database checks its schema revision without Alembic (the
    revision table and the migration files' text: storage/schema_version.py). (SQLAlchemy's
    asyncio extension, which the engine is, imports its ORM: that one stays.)"""
    env = {"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path / "data")}
    program = ("import sys\nfrom paygate_server.command import main\n"
               "assert main(['merchants', 'create', '--name', 'Startup', '--json']) == 0")
    modules = loaded_after(program, env=env, tmp_path=tmp_path)
    assert families(modules, ("alembic",)) == [], database_kind(fresh_database_url)
    assert "sqlalchemy.ext.asyncio" in modules  # (the check ran: the command did open the database)
