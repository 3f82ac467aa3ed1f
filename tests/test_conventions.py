"""The suite's own rules, checked on its source (docs/CONVENTIONS.md): a test that does not
apply skips (a bare ``return`` passes silently), and every wait on a condition goes through
``tests.support.eventually`` instead of a polling loop of its own."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HELPER = TESTS / "support" / "eventually.py"
# Loops and deadlines that are not polls of a condition: (file, function).
NOT_A_WAIT = {
    ("e2e/test_relay_crash.py", "_load"),  # sleeps to pace the background write load
    ("examples/demo_process.py", "running_demo"),  # blocks on each log line, bounded by one deadline
    ("support/fault_proxy.py", "_pump"),  # stamps each chunk with when the injected latency lets it through
    ("support/fault_proxy.py", "deliver"),  # holds each chunk for the injected latency
    ("support/fault_windows.py", "run_windows"),  # keeps a fault on for its window (a reset every 0.3 s)
}


def _functions() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for path in sorted(TESTS.rglob("*.py")):
        if path == HELPER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path.relative_to(TESTS).as_posix(), node


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, without those of the functions defined inside it."""
    for child in ast.iter_child_nodes(function):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from _own_nodes(child)


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute | ast.Name)
               and (n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id) == name
               for n in [node, *_own_nodes(node)])


def test_tests_skip_instead_of_returning_early() -> None:
    early = [f"{path}:{node.lineno} {function.name}" for path, function in _functions()
             if function.name.startswith("test")
             for node in _own_nodes(function) if isinstance(node, ast.Return) and node.value is None]
    assert early == [], "call pytest.skip(reason) instead of returning: " + ", ".join(early)


def test_no_polling_loop_outside_eventually() -> None:
    loops = []
    for path, function in _functions():
        if (path, function.name) in NOT_A_WAIT:
            continue
        for node in _own_nodes(function):
            if isinstance(node, ast.While) and _calls(node, "sleep") or (  # a loop that sleeps
                    isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
                    and _calls(node.left, "monotonic")):  # a deadline: time.monotonic() + timeout
                loops.append(f"{path}:{node.lineno} {function.name}")
    assert loops == [], "wait with tests.support.eventually: " + ", ".join(loops)
