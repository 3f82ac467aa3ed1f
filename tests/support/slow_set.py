"""Whether this pytest run is the slow set: a test marked ``slow`` runs in every run (small),
and at full size when the ``-m`` expression selects it only because it is ``slow``
(``-m slow``, ``-m "slow and not browser"``); not for no ``-m`` or ``-m "not browser"``.

Used by the fault loops (tests/e2e/test_crash_recovery.py, test_*_faults.py,
test_postgres_restart.py, test_several_hosts.py) to size themselves, in
``pytest_generate_tests`` so the size shows in the test id.
"""
from __future__ import annotations

import ast

import pytest

__all__ = ["is_slow_run"]


def _selected(expr: ast.expr, marks: set[str]) -> bool:
    """Evaluate a ``-m`` expression (``and``/``or``/``not``/names) against a set of marks."""
    match expr:
        case ast.BoolOp(op=ast.And(), values=values):
            return all(_selected(v, marks) for v in values)
        case ast.BoolOp(op=ast.Or(), values=values):
            return any(_selected(v, marks) for v in values)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _selected(operand, marks)
        case ast.Name(id=name) | ast.Call(func=ast.Name(id=name)):
            return name in marks
    raise SyntaxError(ast.dump(expr))


def is_slow_run(config: pytest.Config, marks: set[str]) -> bool:
    """Whether a test with ``marks`` (including ``slow``) is selected only for being slow."""
    markexpr = (config.getoption("markexpr") or "").strip()
    if not markexpr:
        return False
    try:  # pytest's mark grammar is a subset of Python's boolean expressions
        tree = ast.parse(markexpr, mode="eval").body
        return not _selected(tree, marks - {"slow"})
    except SyntaxError:  # an expression beyond that subset: the default
        return False
