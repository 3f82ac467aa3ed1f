"""The change and position types, as the history's consumers name them.

They are the change log's rows, so they live with the statements that read them
(:mod:`paygate_server.storage.changes`); this module keeps the domain's import path.
"""
from __future__ import annotations

from paygate_server.storage.changes import START, Change, Position

__all__ = ["Change", "Position", "START"]
