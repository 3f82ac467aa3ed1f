"""The processor simulator: a stand-in for the card network (SPEC §7).

A separate process (``paygate simulator``) with an idempotent charge API, refunds,
settlement reports, test cards and fault injection, backed by its own SQLite file.
See docs/simulator.md.
"""

from __future__ import annotations

from .app import create_app
from .server import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "create_app", "serve"]
