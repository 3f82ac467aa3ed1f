"""No code of ours touches a private attribute of a third-party package's object (issue #16,
"public APIs only"): a private attribute (``_name``, not a dunder) is the package's to
rename or drop in any release, so code that reads one breaks silently on an upgrade.

The rule, checked with ``ast`` over the Python that ships (server, hosted checkout, SDK):

1. ``mod._name`` where ``mod`` was imported from a third-party package: flagged.
2. ``self._name`` / ``cls._name`` in a class of ours whose bases are all ours: fine. In a
   class that subclasses a third-party class, ``_name`` must be defined by that class
   itself (a method, a class attribute, a slot, a ``self._name =`` assignment) and must
   not be a member of the third-party base: reading the base's privates, or clobbering
   them, is flagged. (headerguard.py's subclass of uvicorn's ``HttpToolsProtocol`` passes:
   its hooks are the base's public-named methods, guarded by the canary test and the pin.)
3. ``anything_else._name``: the test cannot know the object's type, so it goes by the
   name: flagged when a third-party package the code depends on (pyproject.toml: the SDK's
   dependencies; for the server and checkout, the server's extras too) defines a member of
   that name in its Python sources. Our own names that clash are allowed in
   :data:`ALLOWED`, each with the reason the object is ours; underscore names a package
   documents as public in :data:`PUBLIC`.

The standard library is not a third-party package: its private names are out of scope.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
OURS = frozenset({"paygate", "paygate_server", "paygate_checkout"})
# Each tree, and the pyproject.toml extras whose distributions its code handles.
TREES = {
    "server/paygate_server": ("server", "postgres", "nats"),
    "checkout/paygate_checkout": ("server",),
    "sdk/paygate": (),
}

# name -> why reading it is fine anywhere: underscore names that are documented public API.
PUBLIC: dict[str, str] = {
    "_mapping": "SQLAlchemy's Row._mapping: documented public API, underscore-prefixed only so "
                "that it cannot clash with a column's name (so are _asdict, _fields, _t, _tuple)",
}

# (file, name) -> why reading that name there is not a third-party private access.
ALLOWED: dict[tuple[str, str], str] = {
    ("sdk/paygate/_resources.py", name): "the SDK's own client (sdk/paygate/_client.py, _base_client.py), "
                                         "of which the resources are a part; httpx has members of that name"
    for name in ("_request", "_prepare")
}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return bool(top) and top not in OURS and top not in sys.stdlib_module_names


def _class_members(cls: ast.ClassDef) -> set[str]:
    """Names a class defines: methods, class attributes, slots, ``self.x =``/``cls.x =``."""
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for node in ast.walk(cls):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else [])
        for target in targets:
            if isinstance(target, ast.Name) and node in cls.body:
                names.add(target.id)
                if target.id == "__slots__":
                    names |= {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)
                              and isinstance(c.value, str)}
            names |= {t.attr for t in ast.walk(target) if isinstance(t, ast.Attribute)
                      and isinstance(t.value, ast.Name) and t.value.id in ("self", "cls")}
    return names


# A member definition in a dependency's source: ``def _x``, ``self._x``/``cls._x``, or an
# indented ``_x`` (class attributes; function locals too, which errs towards flagging).
# A regex, not ast: the dependencies are megabytes of source.
_MEMBER = re.compile(r"(?:\bdef\s+|\bself\.|\bcls\.|^[ \t]+)(_[A-Za-z]\w*)", re.MULTILINE)


def _packages(extras: tuple[str, ...]) -> set[str]:
    """Import names of the distributions pyproject.toml declares for these extras (and the
    SDK's own dependencies, which every tree has)."""
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + [line for extra in extras
                                             for line in project["optional-dependencies"][extra]]
    wanted = {Requirement(line).name.lower().replace("_", "-") for line in lines}
    return {top for top, dists in packages_distributions().items()
            if _third_party(top) and {d.lower().replace("_", "-") for d in dists} & wanted}


@functools.cache
def _members_of_package(top: str) -> frozenset[str]:
    """Private member names in a package's Python sources (compiled-only modules add
    nothing, which errs towards allowing)."""
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin is None:
        return frozenset()
    origin = Path(spec.origin)
    files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
    return frozenset(n for f in files for n in _MEMBER.findall(f.read_text(errors="replace")) if _is_private(n))


def _third_party_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted third-party module or object it is bound to in this file."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name.split(".")[0]): (a.name if a.asname else a.name.split(".")[0])
                      for a in node.names if _third_party(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _third_party(node.module):
            names |= {(a.asname or a.name): f"{node.module}.{a.name}" for a in node.names}
    return names


def _resolve(dotted: str) -> object:
    try:
        return importlib.import_module(dotted)
    except ImportError:
        module, _, name = dotted.rpartition(".")
        return getattr(_resolve(module), name)


def _base_members(base: type) -> set[str]:
    """Every attribute name of a third-party base class, instance attributes included
    (``self.x =`` in its classes' sources)."""
    names: set[str] = set()
    for klass in base.__mro__:
        names |= set(vars(klass))
        source = getattr(sys.modules.get(klass.__module__), "__file__", None)
        if source and source.endswith(".py"):
            for node in ast.walk(ast.parse(Path(source).read_text())):
                if isinstance(node, ast.ClassDef) and node.name == klass.__name__:
                    names |= _class_members(node)
    return names


def _innermost_classes(tree: ast.Module) -> dict[ast.AST, ast.ClassDef]:
    owner: dict[ast.AST, ast.ClassDef] = {}

    def visit(node: ast.AST, cls: ast.ClassDef | None) -> None:
        for child in ast.iter_child_nodes(node):
            if cls is not None:
                owner[child] = cls
            visit(child, child if isinstance(child, ast.ClassDef) else cls)

    visit(tree, None)
    return owner


def _sources() -> Iterator[tuple[str, ast.Module, frozenset[str]]]:
    for tree, extras in TREES.items():
        foreign = frozenset().union(*(_members_of_package(top) for top in _packages(extras)))
        for path in sorted((ROOT / tree).rglob("*.py")):
            yield str(path.relative_to(ROOT)), ast.parse(path.read_text(), str(path)), foreign


def private_accesses(path: str, tree: ast.Module, foreign_members: frozenset[str]) -> list[str]:
    """Every access to a third-party private in one file, as ``path:line: code (why)``."""
    imported = _third_party_names(tree)
    owner = _innermost_classes(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        receiver, why = node.value, None
        if isinstance(receiver, ast.Name) and receiver.id in imported:
            why = f"{receiver.id} comes from {imported[receiver.id]}"
        elif isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
            cls = owner.get(node)
            for root, *rest in (ast.unparse(b).split(".") for b in (cls.bases if cls else [])):
                if root not in imported:
                    continue
                base_class = _resolve(".".join([imported[root], *rest]))
                assert isinstance(base_class, type) and cls is not None
                if node.attr not in _class_members(cls):
                    why = f"a private of the base {base_class.__qualname__}"
                elif node.attr in _base_members(base_class):
                    why = f"clobbers a member of the base {base_class.__qualname__}"
        elif node.attr in foreign_members:
            why = "a third-party package the code depends on defines a member of that name"
        if why is not None and node.attr not in PUBLIC and (path, node.attr) not in ALLOWED:
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)} ({why})")
    return found


def test_no_private_attribute_of_a_third_party_object_is_touched() -> None:
    found = [access for source in _sources() for access in private_accesses(*source)]
    assert not found, "private attributes of third-party objects:\n" + "\n".join(found)


def test_every_allowance_is_needed() -> None:
    used: set[object] = set()
    for path, tree, _ in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                used |= {node.attr, (path, node.attr)}
    unused = (set(PUBLIC) | set(ALLOWED)) - used
    assert not unused, f"allowances no longer needed: {sorted(map(str, unused))}"
