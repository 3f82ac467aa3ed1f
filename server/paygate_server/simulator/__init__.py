"""The processor simulator: a stand-in for the card network (SPEC §7).

A separate process (``paygate simulator``) with an idempotent charge API, authorizations
with captures, voids and hold expiry (``holds.py``, on its own clock: ``clock.py``),
refunds, settlement reports, test cards and fault injection, backed by its own SQLite file
(``store.py``, written through one thread: ``writer.py``).
See docs/simulator.md.
"""

from __future__ import annotations

from .app import create_app
from .server import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "create_app", "serve"]
