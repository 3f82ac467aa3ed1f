"""Latency histograms for the load generator: mergeable across processes, bounded memory.

Each latency lands in a logarithmic bucket whose width is 1 % of its value, so a
percentile read from the histogram is within 1 % of the exact nearest-rank percentile,
whatever the run length (a 10-minute run at 10,000 req/s keeps a few hundred integers,
not six million floats). Histograms from several worker processes merge by adding counts.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["PERCENTILES", "LatencyHistogram"]

PERCENTILES = (50.0, 95.0, 99.0)
_GROWTH = 1.01  # bucket width: 1 % of the value
_LOG_GROWTH = math.log(_GROWTH)
_MIN_S = 1e-6  # anything under a microsecond is recorded as one microsecond


def _bucket(seconds: float) -> int:
    return int(math.log(max(seconds, _MIN_S) / _MIN_S) / _LOG_GROWTH)


def _bucket_value(index: int) -> float:
    """The geometric middle of a bucket: at most half a bucket (0.5 %) from any member."""
    return _MIN_S * _GROWTH ** (index + 0.5)


@dataclass
class LatencyHistogram:
    counts: Counter[int] = field(default_factory=Counter)
    count: int = 0
    total_s: float = 0.0
    min_s: float = math.inf
    max_s: float = 0.0

    def record(self, seconds: float) -> None:
        self.counts[_bucket(seconds)] += 1
        self.count += 1
        self.total_s += seconds
        self.min_s = min(self.min_s, seconds)
        self.max_s = max(self.max_s, seconds)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)
        self.count += other.count
        self.total_s += other.total_s
        self.min_s = min(self.min_s, other.min_s)
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile in seconds (None when empty), clamped to [min, max]."""
        if self.count == 0:
            return None
        if not 0.0 < p <= 100.0:
            raise ValueError("percentile must be in (0, 100]")
        rank = max(1, math.ceil(p / 100.0 * self.count))
        if rank == self.count:  # the extremes are kept exactly
            return self.max_s
        if rank == 1:
            return self.min_s
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(max(_bucket_value(index), self.min_s), self.max_s)
        return self.max_s  # unreachable: the counts add up to count

    @property
    def mean_s(self) -> float | None:
        return self.total_s / self.count if self.count else None

    def summary_ms(self) -> dict[str, float | int | None]:
        """``count``, ``meanMs``, ``p50Ms``, ``p95Ms``, ``p99Ms``, ``maxMs`` (milliseconds)."""
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000.0, 3)

        out: dict[str, float | int | None] = {"count": self.count, "meanMs": ms(self.mean_s)}
        for p in PERCENTILES:
            out[f"p{p:g}Ms"] = ms(self.percentile(p))
        out["maxMs"] = ms(self.max_s if self.count else None)
        return out

    def to_wire(self) -> dict[str, object]:
        """A plain, picklable/JSON-able form (for the worker → parent pipe)."""
        return {"counts": dict(self.counts), "count": self.count, "total_s": self.total_s,
                "min_s": self.min_s if self.count else None, "max_s": self.max_s}

    @classmethod
    def from_wire(cls, data: dict[str, object]) -> LatencyHistogram:
        counts = Counter({int(k): int(v) for k, v in dict(data["counts"]).items()})  # type: ignore[call-overload]
        minimum = data.get("min_s")
        return cls(counts=counts, count=int(data["count"]),  # type: ignore[call-overload]
                   total_s=float(data["total_s"]),  # type: ignore[arg-type]
                   min_s=math.inf if minimum is None else float(minimum),  # type: ignore[arg-type]
                   max_s=float(data["max_s"]))  # type: ignore[arg-type]

