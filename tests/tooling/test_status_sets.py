"""Where a waiter stops is decided once: the server's ``intents/schemas.py`` (FINAL_STATUSES,
RESTING_STATUSES, OUTCOME_STATUSES) and the SDK's public constants. A hand-copied set
elsewhere drifts (the bench once called ``{"succeeded", "failed", "canceled"}`` final).

Walked with ``ast``: a module-level constant whose value holds a set literal with both final
statuses is such a copy; sets of other statuses (e.g. which ones can be canceled) are rules
of their own and not looked at.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "server" / "paygate_server", ROOT / "tests" / "support", ROOT / "sdk" / "paygate"]
CANONICAL = {ROOT / "server" / "paygate_server" / "intents" / "schemas.py", ROOT / "sdk" / "paygate" / "_models.py"}
STATUSES = {"created", "in_progress", "requires_capture", "succeeded", "failed", "canceled"}
FINAL = {"succeeded", "canceled"}


def copies(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for statement in ast.parse(path.read_text(), str(path)).body:
        if not isinstance(statement, (ast.Assign, ast.AnnAssign)) or statement.value is None:
            continue
        for node in ast.walk(statement.value):
            values = {e.value for e in node.elts if isinstance(e, ast.Constant)} if isinstance(node, ast.Set) else set()
            if values and values <= STATUSES and FINAL <= values:
                found.append(f"{path.relative_to(root)}:{statement.lineno} {sorted(values)}")
    return found


def test_status_sets_have_one_owner() -> None:
    found = [c for folder in SCANNED for path in sorted(folder.rglob("*.py")) if path not in CANONICAL
             for c in copies(path)]
    assert found == [], "use paygate_server.intents.schemas (or the SDK's constants):\n" + "\n".join(found)


def test_the_check_finds_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "copy.py"
    copy.write_text('DONE = frozenset({"succeeded", "failed", "canceled"})\nOTHER = {"created", "failed"}\n')
    assert copies(copy, tmp_path) == ["copy.py:1 ['canceled', 'failed', 'succeeded']"]
