"""Named crash points for the crash-recovery tests (``PAYGATE_FAULT_POINT``).

In production the variable is unset and :func:`crash_point` is a no-op comparison. When it
names a point, the process SIGKILLs itself there — no ``finally``, no shutdown hook, no
flushed buffers: exactly what a power cut or an OOM kill does.
"""
from __future__ import annotations

import os
import signal

__all__ = ["crash_point", "POINTS"]

POINTS = (
    "after_attempt_commit",  # the attempt is committed, the processor not yet called
    "during_processor_call",  # the request is at the processor, its answer not yet read
    "after_processor_approved",  # the processor approved; the gateway has not committed
    "prune_before_commit",  # a pruning transaction deleted its rows (or dropped its partition), not committed
    "prune_after_commit",  # a pruning transaction committed, the next one not begun
)


def crash_point(configured: str | None, name: str) -> None:
    if configured == name:
        os.kill(os.getpid(), signal.SIGKILL)
