"""Fault injection for the processor simulator (``POST /v1/_faults``).

The configuration also carries ``authorizationTtlS``, how long an authorization holds its
amount: not a fault, but a test's knob over the card network, set with the others.

Faults are process-wide and live in memory only: a restart clears them, which is what a
test that injects faults wants. Every random draw goes through one seedable
``random.Random`` so that a run can be reproduced (``PAYGATE_SIMULATOR_SEED``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_AUTHORIZATION_TTL_S",
    "FaultConfig",
    "FaultDecision",
    "FaultError",
    "FaultInjector",
]

# Upper bound for latency/jitter: long enough for any test, short enough that a typo
# cannot park requests for hours.
MAX_DELAY_MS = 600_000

_RATE_FIELDS = ("errorRate", "timeoutRate", "dropResponseRate")
_DELAY_FIELDS = ("latencyMs", "jitterMs")
_TTL_FIELD = "authorizationTtlS"
# A card network's usual hold (7 days), and the longest one allowed (a year).
DEFAULT_AUTHORIZATION_TTL_S = 7 * 24 * 3600
MAX_AUTHORIZATION_TTL_S = 365 * 24 * 3600


class FaultError(ValueError):
    """An invalid fault configuration; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class FaultConfig:
    latency_ms: int = 0
    jitter_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    drop_response_rate: float = 0.0
    # int or float seconds, as given (so that GET shows what POST set).
    authorization_ttl_s: float = DEFAULT_AUTHORIZATION_TTL_S

    @classmethod
    def from_json(cls, data: Any) -> FaultConfig:
        """Validate a ``/v1/_faults`` body. Omitted faults are 0 and an omitted
        ``authorizationTtlS`` is the default 7 days (the body replaces the whole
        configuration, so a test states every fault it wants)."""
        if not isinstance(data, dict):
            raise FaultError("body must be a JSON object")
        unknown = sorted(set(data) - set(_RATE_FIELDS) - set(_DELAY_FIELDS) - {_TTL_FIELD})
        if unknown:
            raise FaultError(f"unknown field {unknown[0]!r}", unknown[0])
        delays: dict[str, int] = {}
        for name in _DELAY_FIELDS:
            value = data.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int):
                raise FaultError(f"{name} must be an integer", name)
            if not 0 <= value <= MAX_DELAY_MS:
                raise FaultError(f"{name} must be between 0 and {MAX_DELAY_MS}", name)
            delays[name] = value
        rates: dict[str, float] = {}
        for name in _RATE_FIELDS:
            value = data.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise FaultError(f"{name} must be a number", name)
            if not 0.0 <= float(value) <= 1.0:
                raise FaultError(f"{name} must be between 0 and 1", name)
            rates[name] = float(value)
        ttl = data.get(_TTL_FIELD, DEFAULT_AUTHORIZATION_TTL_S)
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise FaultError(f"{_TTL_FIELD} must be a number of seconds", _TTL_FIELD)
        if not 0 <= ttl <= MAX_AUTHORIZATION_TTL_S:
            raise FaultError(
                f"{_TTL_FIELD} must be between 0 and {MAX_AUTHORIZATION_TTL_S}", _TTL_FIELD
            )
        return cls(
            latency_ms=delays["latencyMs"],
            jitter_ms=delays["jitterMs"],
            error_rate=rates["errorRate"],
            timeout_rate=rates["timeoutRate"],
            drop_response_rate=rates["dropResponseRate"],
            authorization_ttl_s=ttl,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "latencyMs": self.latency_ms,
            "jitterMs": self.jitter_ms,
            "errorRate": self.error_rate,
            "timeoutRate": self.timeout_rate,
            "dropResponseRate": self.drop_response_rate,
            _TTL_FIELD: self.authorization_ttl_s,
        }


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The faults drawn for one request (a charge, capture, void or refund)."""

    delay_s: float = 0.0
    error: bool = False
    timeout: bool = False
    drop: bool = False


_NO_FAULT = FaultDecision()


class FaultInjector:
    """Holds the current configuration and draws a decision per request.

    The draws are independent and checked in a fixed order: ``errorRate`` first (the
    request fails, nothing is charged), else ``timeoutRate`` (charged, answer late),
    else ``dropResponseRate`` (charged, answer lost).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.config = FaultConfig()

    def draw(self) -> FaultDecision:
        cfg = self.config
        if (cfg.latency_ms, cfg.jitter_ms, cfg.error_rate, cfg.timeout_rate,
                cfg.drop_response_rate) == _NO_FAULTS:
            # The common (benchmark) path: no draws, no allocation.
            return _NO_FAULT
        rng = self.rng
        delay_ms = float(cfg.latency_ms)
        if cfg.jitter_ms:
            delay_ms += rng.uniform(0.0, float(cfg.jitter_ms))
        error = cfg.error_rate > 0.0 and rng.random() < cfg.error_rate
        timeout = not error and cfg.timeout_rate > 0.0 and rng.random() < cfg.timeout_rate
        drop = (
            not error
            and not timeout
            and cfg.drop_response_rate > 0.0
            and rng.random() < cfg.drop_response_rate
        )
        return FaultDecision(delay_s=delay_ms / 1000.0, error=error, timeout=timeout, drop=drop)


_NO_FAULTS = (0, 0, 0.0, 0.0, 0.0)
