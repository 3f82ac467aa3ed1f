"""The one settle path of every processor operation (charge now; capture, void, refund).

What the processor said becomes an :class:`~paygate_server.storage.port.Outcome` (a
charge's in :func:`paygate_server.processing.service.charge_outcome`, a refund's here), and
the store applies it once (the lock, the conditional update, dropping or moving the
reconciler's check are the store's: ``settle_attempt``/``settle_refund`` share them):

- a definitive answer settles the operation: ``succeeded`` or ``failed`` with its codes;
- anything else (unknown, retry later, not found yet) leaves it ``unknown`` and moves its
  check to the next step of the back-off schedule, with jitter so that many unknowns do
  not stampede — but no later than ``check_by`` (a deadline at which the answer is judged
  differently, e.g. "not found" becoming "never received").
"""
from __future__ import annotations

import random

from paygate_server.clock import now_us
from paygate_server.processing.connectors import (
    ChargeOutcome,
    RefundResult,
    is_definitive,
    processor_text,
)
from paygate_server.storage.port import Outcome

__all__ = ["next_check_at", "refund_outcome", "unknown_outcome"]

_US = 1_000_000


def next_check_at(schedule: tuple[float, ...], checks: int, check_by: int | None = None,
                  not_before: int | None = None) -> int:
    """When to ask the processor again (µs) after ``checks`` checks: the back-off step, no
    earlier than ``not_before`` (a request sent without an answer may still be on its way
    until then), no later than ``check_by``."""
    base = schedule[min(checks, len(schedule) - 1)]
    due_at = now_us() + int(base * random.uniform(0.8, 1.2) * _US)
    if not_before is not None:
        due_at = max(due_at, not_before)
    return due_at if check_by is None else min(due_at, check_by)


def unknown_outcome(outcome: ChargeOutcome, message: str | None, schedule: tuple[float, ...], checks: int,
                    check_by: int | None, processor_id: str | None = None, not_before: int | None = None) -> Outcome:
    """Not a definitive answer: the operation stays ``unknown``, its check moves on (the
    processor's id of its payment kept, if the answer had one)."""
    said = message or outcome.value
    return Outcome("unknown", error_message=said[:500], last_result=said[:200],
                   due_at=next_check_at(schedule, checks, check_by, not_before), checks=checks,
                   processor_id=processor_id)


def refund_outcome(result: RefundResult, *, schedule: tuple[float, ...], checks: int = 0,
                   check_by: int | None = None, not_before: int | None = None) -> Outcome:
    if not is_definitive(result.outcome):
        return unknown_outcome(result.outcome, result.message, schedule, checks, check_by, not_before=not_before)
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded")
    # Why, kept on the refund (its failureReason) for the operator and the merchant: the
    # processor's words, or the connector's when it sent nothing. Connectors already leave
    # out a text quoting a card number where they read it; checked again here, as this one
    # text of the processor's reaches the merchant. A refund is sent no security code, and
    # the gateway holds none by then (dropped with its authorization's outcome).
    return Outcome("failed", error_code="refund_refused", error_message=processor_text(result.message, 500))
