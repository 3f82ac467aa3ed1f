"""Package attributes imported on first use (PEP 562).

A package whose ``__init__`` would otherwise import something heavy (SQLAlchemy's asyncio
extension, Alembic, ``cryptography``, the gateway's services) names those attributes here
instead: ``paygate --help``, the simulator and each command import only what they run.
tests/server/test_startup_imports.py checks what they load.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, sources: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` (its ``__name__``).

    ``sources`` maps each attribute to where it lives: ``"module"`` (the same name there) or
    ``"module:attribute"``; a module starting with ``.`` is relative to ``package``. The
    value is imported on the first look-up and kept in the package's namespace, so later
    look-ups never come here. Any other name raises ``AttributeError``, which lets
    ``from package import submodule`` go on to import the submodule.
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        try:
            module, _, attribute = sources[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), attribute or name)
        namespace[name] = value
        return value

    return __getattr__
