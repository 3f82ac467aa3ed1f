"""The names of the planted bugs (:mod:`.plants`), which `paygate simulate --plant` offers
without importing the plants themselves (they patch the whole payment core)."""
from __future__ import annotations

__all__ = ["PLANT_NAMES"]

PLANT_NAMES: tuple[str, ...] = (
    "unknown-is-failure",
    "early-never-received",
    "offset-before-events",
    "no-answer-is-delivered",
    "abandoned-claim-run-again",
    "spent-token-retry-in-progress",
)
