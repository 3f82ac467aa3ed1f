"""What ``paygate bench --scenario`` can drive (the worker's flows, bench/worker.py), named
apart from the worker so that the command line offers them without importing it."""
from __future__ import annotations

__all__ = ["SCENARIOS"]

SCENARIOS = ("payment", "create", "status", "process")
