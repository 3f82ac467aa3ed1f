"""Named crash points for the crash-recovery tests (``PAYGATE_FAULT_POINT``).

In production the variable is unset and :func:`crash_point` is a no-op comparison. When it
names a point, the process SIGKILLs itself there — no ``finally``, no shutdown hook, no
flushed buffers: exactly what a power cut or an OOM kill does.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

__all__ = ["crash_point", "dying_mid_call", "POINTS"]

POINTS = (
    "after_attempt_commit",  # the attempt is committed, the processor not yet called
    "after_capture_commit",  # a capture is committed with its reference, the processor not yet called
    "after_void_commit",  # likewise a void (a cancel of a held authorization)
    "after_refund_commit",  # likewise a refund (its amount reserved)
    "during_processor_call",  # the request (charge, capture, void, refund) is at the processor, its answer not yet read
    "after_processor_approved",  # the processor approved; the gateway has not committed
    "prune_before_commit",  # a pruning transaction deleted its rows (or dropped its partition), not committed
    "prune_after_commit",  # a pruning transaction committed, the next one not begun
)


def crash_point(configured: str | None, name: str) -> None:
    if configured == name:
        os.kill(os.getpid(), signal.SIGKILL)


# How far into the call the process dies: the tests give the processor more latency than this.
MID_CALL_S = 0.15


@contextlib.contextmanager
def dying_mid_call(configured: str | None) -> Iterator[None]:
    """At ``during_processor_call``: SIGKILL while the processor call made inside is under way."""
    if configured != "during_processor_call":
        yield
        return
    killer = asyncio.get_running_loop().call_later(MID_CALL_S, os.kill, os.getpid(), signal.SIGKILL)
    try:
        yield
    finally:
        killer.cancel()
