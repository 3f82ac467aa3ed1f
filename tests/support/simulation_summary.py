"""One line at the end of a test run: the simulation's seeds, steps, histories checked and
faults injected by kind, summed over every chunk of ``tests/simulation/test_seeds.py`` and
every xdist worker (each chunk records its figures as a user property of its report,
which xdist sends back to the controller)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

__all__ = ["SIMULATION_PROPERTY", "SimulationTotals", "record"]

SIMULATION_PROPERTY = "paygate-simulation"


class SimulationTotals:
    def __init__(self) -> None:
        self.chunks = 0
        self.counts: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def add(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == SIMULATION_PROPERTY and isinstance(value, dict):
                self.chunks += 1
                self.counts.update({key: int(value.get(key, 0)) for key in ("seeds", "steps", "histories", "events", "failing")})
                self.faults.update({str(kind): int(n) for kind, n in dict(value.get("faults", {})).items()})

    def line(self) -> str | None:
        if not self.chunks:
            return None
        faults = ", ".join(f"{kind} {n:,}" for kind, n in self.faults.most_common())
        c = self.counts
        return (f"simulation: {c['seeds']:,} seeds in {self.chunks} chunks, {c['steps']:,} steps, "
                f"{c['histories']:,} histories and {c['events']:,} webhook events checked, {c['failing']} failing seeds; faults injected: "
                f"{faults or 'none'}")


def record(totals: SimulationTotals, report: Any) -> None:
    if getattr(report, "when", None) == "call":
        totals.add(report)
