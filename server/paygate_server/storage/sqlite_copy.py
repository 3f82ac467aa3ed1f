"""A copy of what is committed in a SQLite database, for the simulation's crashes.

A process that dies leaves exactly what was committed: in WAL mode that is what a new
connection reads, whatever transaction another connection still holds open. So the
simulation's crash is a copy made through a fresh connection (SQLite's online backup),
and the restarted gateway opens the copy: nothing the dead process had not committed
survives, and none of its open connections or threads can touch the new one.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["copy_committed", "sqlite_url"]


def copy_committed(source: Path, target: Path) -> None:
    """Copy the committed state of the database at ``source`` to a new file ``target``."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"
