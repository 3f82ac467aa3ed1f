"""The storage package is the one home of SQL and of the choice of database (issue #16).

Outside ``paygate_server/storage``, no module imports a database library, asks which
database it runs on, or carries SQL text. Walked with ``ast``: comments and prose in
docstrings do not count, string literals and attribute names do.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server" / "paygate_server"
STORAGE = SERVER / "storage"

# Not the gateway's database: the bundled processor simulator is another program (its own
# process, its own SQLite ledger of what "the card network" charged); it shares the
# distribution, not the gateway's storage. Its ledger's statements and its tables' schema.
ALLOWED = {SERVER / "simulator" / "store.py", SERVER / "simulator" / "schema.py"}

_DRIVERS = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "psycopg")
_DIALECT_NAMES = {"is_sqlite", "is_postgres", "dialect"}
_SQL = re.compile(r"^\s*(WITH\s+\w+\s+AS\s*\(|SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|"
                  r"DELETE\s+FROM\s|CREATE\s+(TABLE|INDEX)\s|ALTER\s+TABLE\s|DROP\s+TABLE\s)", re.I | re.S)


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: imports {a.name}" for a in node.names if a.name.split(".")[0] in _DRIVERS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in _DRIVERS:
            found.append(f"{line}: imports from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in _DIALECT_NAMES:
            found.append(f"{line}: asks the database kind (.{node.attr})")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
              and _SQL.match(node.value)):
            found.append(f"{line}: SQL text {node.value[:40]!r}")
    return found


def _outside_storage() -> list[Path]:
    return sorted(p for p in SERVER.rglob("*.py") if STORAGE not in p.parents and p not in ALLOWED)


@pytest.mark.parametrize("path", _outside_storage(), ids=lambda p: str(p.relative_to(SERVER)))
def test_no_sql_and_no_database_kind_outside_storage(path: Path) -> None:
    assert violations(path) == []


def test_the_walk_finds_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        '"""SELECT a FROM b in a docstring is prose."""\n'
        "from sqlalchemy import select\n"
        "import asyncpg\n"
        "def f(db):\n"
        "    if db.is_sqlite:\n"
        "        return 'SELECT id FROM payment_intents WHERE id = :id'\n"
        "    return conn.dialect.name, 'UPDATE t SET a = 1', 'DELETE FROM t', 'select the card'\n"
    )
    assert [v.split(":")[0] for v in violations(bad)] == ["2", "3", "5", "6", "7", "7", "7"]


# The operations and what they stand on: commands in, domain results out, no HTTP types.
_BELOW_HTTP = sorted([*SERVER.glob("*/service.py"), *STORAGE.rglob("*.py"), SERVER / "processing" / "settle.py",
                      SERVER / "processing" / "reconciler.py", SERVER / "processing" / "settlement.py"])


@pytest.mark.parametrize("path", _BELOW_HTTP, ids=lambda p: str(p.relative_to(SERVER)))
def test_operations_and_storage_do_not_import_starlette(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] == "starlette"}
