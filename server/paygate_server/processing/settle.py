"""The one settle path of every processor operation (charge now; capture, void, refund).

What the processor said becomes an :class:`~paygate_server.storage.port.Outcome` here, and
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

from paygate_server import jsoncodec
from paygate_server.clock import now_us
from paygate_server.processing.connectors import ChargeOutcome, ChargeResult, RefundResult
from paygate_server.storage.port import Outcome

__all__ = ["HOLD_GONE", "charge_outcome", "decline_message", "follow_up_outcome", "is_definitive", "next_check_at",
           "refund_outcome"]

_US = 1_000_000
_DEFINITIVE = (ChargeOutcome.APPROVED, ChargeOutcome.DECLINED, ChargeOutcome.FAILED)
_DECLINE_MESSAGES = {
    "generic_decline": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "invalid_number": "The card number is invalid.",
}


def decline_message(code: str | None) -> str:
    return _DECLINE_MESSAGES.get(code or "", "The card was declined.")


def is_definitive(outcome: ChargeOutcome) -> bool:
    """The processor said yes or no (as opposed to: unknown, try again, never heard of it)."""
    return outcome in _DEFINITIVE


def next_check_at(schedule: tuple[float, ...], checks: int, check_by: int | None = None) -> int:
    """When to ask the processor again (µs) after ``checks`` checks."""
    base = schedule[min(checks, len(schedule) - 1)]
    due_at = now_us() + int(base * random.uniform(0.8, 1.2) * _US)
    return due_at if check_by is None else min(due_at, check_by)


def _unknown(outcome: ChargeOutcome, message: str | None, schedule: tuple[float, ...], checks: int,
             check_by: int | None) -> Outcome:
    said = message or outcome.value
    return Outcome("unknown", error_message=said[:500], last_result=said[:200],
                   due_at=next_check_at(schedule, checks, check_by), checks=checks)


def charge_outcome(result: ChargeResult, *, schedule: tuple[float, ...], checks: int = 0,
                   check_by: int | None = None) -> Outcome:
    if not is_definitive(result.outcome):
        return _unknown(result.outcome, result.message, schedule, checks, check_by)
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded", auth_code=result.auth_code)
    if result.outcome is ChargeOutcome.DECLINED:
        error: dict[str, str | None] = {"code": "card_declined", "declineCode": result.decline_code or "generic_decline",
                                        "message": decline_message(result.decline_code)}
    else:  # FAILED: the processor said nothing was charged
        error = {"code": "processing_error", "declineCode": None,
                 "message": "The processor could not process the payment. Try again or use another card."}
    return Outcome("failed", decline_code=error["declineCode"], error_code=error["code"],
                   error_message=error["message"], intent_error=jsoncodec.dumps(error).decode())


# A capture or void refused because the hold is gone: the intent ends canceled, expired.
HOLD_GONE = frozenset({"authorization_expired", "authorization_voided"})
_REFUSED_MESSAGES = {
    "capture": "The processor refused the capture; the authorization is still held.",
    "void": "The processor refused to void the authorization; it is still held.",
}


def follow_up_outcome(kind: str, result: ChargeResult, *, schedule: tuple[float, ...], checks: int = 0,
                      check_by: int | None = None) -> Outcome:
    """A capture's or void's outcome, with where its intent goes: done (``succeeded`` /
    ``canceled``), the hold gone (``canceled``, ``expired``), or refused with nothing
    changed (back to ``requires_capture`` with ``lastError``)."""
    if not is_definitive(result.outcome):
        return _unknown(result.outcome, result.message, schedule, checks, check_by)
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded", intent_status="succeeded" if kind == "capture" else "canceled")
    code = result.decline_code or "processing_error"
    if code in HOLD_GONE:
        return Outcome("failed", decline_code=code, error_code=code, error_message=result.message,
                       intent_status="canceled", cancellation_reason="expired")
    error = {"code": "processing_error", "declineCode": code, "message": _REFUSED_MESSAGES[kind]}
    return Outcome("failed", decline_code=code, error_code="processing_error", error_message=result.message,
                   intent_error=jsoncodec.dumps(error).decode(), intent_status="requires_capture")


def refund_outcome(result: RefundResult, *, schedule: tuple[float, ...], checks: int = 0) -> Outcome:
    if not is_definitive(result.outcome):
        return _unknown(result.outcome, result.message, schedule, checks, None)
    if result.outcome is ChargeOutcome.APPROVED:
        return Outcome("succeeded")
    return Outcome("failed", error_code="refund_refused")
