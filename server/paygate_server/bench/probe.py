"""The gateway's own view of the processor during the window, from its ``/metrics``.

Sampling ``paygate_processor_request_duration_seconds`` (sum and count of charge calls) at
both edges of the window gives the mean time the gateway spent waiting on the processor
per charge, so the report can show the gateway's *own* share of a ``process`` call. With
several workers the gateway must run in multiprocess mode (``--spawn`` sets it up);
otherwise one worker answers for itself only, and the probe says so by seeing fewer calls.
"""
from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsProbe", "processor_between"]

_NAME = "paygate_processor_request_duration_seconds"


class MetricsProbe:
    def __init__(self, gateway_url: str, token: str | None = None) -> None:
        self.url = gateway_url.rstrip("/") + "/metrics"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def sample(self) -> dict[str, float] | None:
        """{"sum": seconds, "count": calls} of charge calls so far, or None if unavailable."""
        try:
            response = httpx.get(self.url, headers=self.headers, timeout=5.0, trust_env=False)
            if response.status_code != 200:
                return None
            charges = [s for family in text_string_to_metric_families(response.text) if family.name == _NAME
                       for s in family.samples if s.labels.get("operation") == "charge"]
            return {"sum": sum(s.value for s in charges if s.name == _NAME + "_sum"),
                    "count": sum(s.value for s in charges if s.name == _NAME + "_count")}
        except (httpx.HTTPError, ValueError):
            return None


def processor_between(start: dict[str, float] | None, end: dict[str, float] | None) -> dict[str, Any] | None:
    if start is None or end is None:
        return None
    calls = end["count"] - start["count"]
    if calls <= 0:
        return {"charges": 0, "meanMs": None}
    return {"charges": int(calls), "meanMs": round((end["sum"] - start["sum"]) / calls * 1000.0, 3)}
