"""Fault windows under load: switch a fault on through a :class:`FaultProxyThread` for a
while, heal it, and record what the clients saw (tests/e2e/test_*_faults.py).

Each window's :class:`~tests.support.payment_load.Window` counts the calls under way during
it, their answers and the slowest, and how long after healing a payment succeeded again;
:func:`check_windows` fails a window with any answer a fault may not cause or a call slower
than the bound.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxyThread
from tests.support.payment_load import PaymentLoad, Window, summarize
from tests.support.slow_set import is_slow_run

__all__ = ["Fault", "Plan", "check_windows", "parametrize_plan", "run_windows", "steady"]

DURING_EVERY_S = 0.3  # how often a fault's ``during`` runs again (a reset storm's pace)
RECOVERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Fault:
    name: str
    on: Callable[[FaultProxyThread], object]
    during: Callable[[FaultProxyThread], object] | None = None  # again every DURING_EVERY_S


@dataclass(frozen=True)
class Plan:
    """Which faults, and for how long each: a quick plan for every run, a full one for the
    slow set (``-m slow``: tests/support/slow_set.py)."""

    name: str
    faults: list[Fault]
    window_s: float


def parametrize_plan(metafunc: pytest.Metafunc, quick: Plan, full: Plan) -> Plan | None:
    """From a module's ``pytest_generate_tests``: its ``plan`` argument, named in the test
    id; the plan chosen (None for a test without one)."""
    if "plan" not in metafunc.fixturenames:
        return None
    plan = full if is_slow_run(metafunc.config, {m.name for m in metafunc.definition.iter_markers()}) else quick
    metafunc.parametrize("plan", [plan], ids=[plan.name])
    return plan


async def steady(load: PaymentLoad, since: float) -> None:
    """Until a payment that started at or after ``since`` has succeeded."""
    await eventually(lambda: load.succeeded_after(since), timeout=RECOVERY_TIMEOUT_S, interval=0.05,
                     what="a payment to succeed")


async def run_windows(load: PaymentLoad, proxy: FaultProxyThread, faults: list[Fault],
                      window_s: float) -> list[Window]:
    """Each fault for ``window_s`` under load, then healed until a payment succeeds again."""
    load.start()
    windows = []
    try:
        await steady(load, time.monotonic())
        for fault in faults:
            start = time.monotonic()
            fault.on(proxy)
            while time.monotonic() - start < window_s:
                await asyncio.sleep(DURING_EVERY_S)  # the fault's pace, not a wait for a result
                if fault.during is not None:
                    fault.during(proxy)
            proxy.heal()
            end = time.monotonic()
            await steady(load, end)
            windows.append(summarize(load, fault.name, start, end))
            print(windows[-1].line())  # the figures docs/reliability.md quotes (pytest -s shows them)
    finally:
        await load.stop()
    return windows


def check_windows(windows: list[Window], max_latency_s: float) -> None:
    for w in windows:
        assert not w.bad, w.line()
        assert w.max_latency_s <= max_latency_s, w.line()
