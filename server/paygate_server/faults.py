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

__all__ = ["POINTS", "crash_point", "dying_mid_call", "unknown_point"]

# Every point a process can die at: ``PAYGATE_FAULT_POINT`` names one of these or is refused
# at start-up (config.py), as a misspelt name would otherwise never fire and a crash test
# would pass without crashing anything.
POINTS = (
    "after_attempt_commit",  # the attempt is committed, the processor not yet called
    "after_capture_commit",  # a capture is committed with its reference, the processor not yet called
    "after_void_commit",  # likewise a void (a cancel of a held authorization)
    "after_refund_commit",  # likewise a refund (its amount reserved)
    "during_processor_call",  # the request (charge, capture, void, refund) is at the processor, its answer not yet read
    "after_processor_approved",  # the processor approved a charge; the gateway has not committed
    "after_capture_answered",  # the processor did a capture or refused it; the gateway has not recorded which
    "after_void_answered",  # likewise a void
    "after_refund_answered",  # likewise a refund
    "prune_before_commit",  # a pruning transaction deleted its rows (or dropped its partition), not committed
    "prune_after_commit",  # a pruning transaction committed, the next one not begun
    "relay_after_deliver",  # a relay's consumer took a batch; its offset not yet saved
    "archive_after_segment",  # an archive segment is written; its index and manifest entry not yet
    "broker_mid_batch",  # half of a batch is published to the broker, the rest not yet
)


def unknown_point(name: str) -> str | None:
    """Why ``name`` is no crash point (one line, with the known ones), else None."""
    return None if name in POINTS else f"not a crash point; the known ones: {', '.join(POINTS)}"


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
