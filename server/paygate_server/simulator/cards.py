"""Card rules of the processor simulator: Luhn, brands, expiry and the test-card table.

Everything here is pure (no I/O, no clock reads of its own) so that the behaviour of
each test card can be checked in isolation. The card number only ever lives in the
request being evaluated: what leaves this module is a brand, the last four digits and
a :class:`Behaviour`.
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass

# The gateway's Luhn check: both sides agree on what a valid number is.
from paygate_server.cards.pan import luhn_valid

__all__ = [
    "TEST_CARDS",
    "Action",
    "Behaviour",
    "brand_of",
    "evaluate",
    "is_expired",
    "luhn_valid",
]


class Action(str, enum.Enum):
    """What the simulator does with a charge, before faults are layered on top."""

    APPROVE = "approve"
    DECLINE = "decline"
    # 500 processing_error, nothing recorded, every time.
    ERROR = "error"
    # Approved and recorded at once; the HTTP answer only after the slow-card delay.
    SLOW_ANSWER = "slow_answer"
    # Approved and recorded; the connection is dropped instead of answering.
    DROP = "drop"
    # First call for a reference: 503 temporarily_unavailable (nothing recorded);
    # the next call with the same reference is approved.
    RETRY_FIRST = "retry_first"


@dataclass(frozen=True, slots=True)
class Behaviour:
    action: Action
    decline_code: str | None = None
    # Processing time spent *before* the charge is recorded (card 1042).
    delay_s: float = 0.0


_APPROVE = Behaviour(Action.APPROVE)

# The SPEC §7 test cards. Numbers are public test values, not real cards.
TEST_CARDS: dict[str, Behaviour] = {
    "4242424242424242": _APPROVE,
    "5555555555554444": _APPROVE,
    "378282246310005": _APPROVE,
    "4000000000000002": Behaviour(Action.DECLINE, "generic_decline"),
    "4000000000009995": Behaviour(Action.DECLINE, "insufficient_funds"),
    "4000000000000069": Behaviour(Action.DECLINE, "expired_card"),
    "4000000000000127": Behaviour(Action.DECLINE, "incorrect_cvc"),
    "4000000000000119": Behaviour(Action.ERROR),
    "4000000000001018": Behaviour(Action.SLOW_ANSWER),
    "4000000000001026": Behaviour(Action.DROP),
    "4000000000001034": Behaviour(Action.RETRY_FIRST),
    "4000000000001042": Behaviour(Action.APPROVE, delay_s=1.5),
}


def brand_of(digits: str) -> str:
    """Card brand from the issuer prefix (enough for a sandbox, not a BIN table)."""
    two = int(digits[:2]) if len(digits) >= 2 else -1
    four = int(digits[:4]) if len(digits) >= 4 else -1
    six = int(digits[:6]) if len(digits) >= 6 else -1
    if digits.startswith("4"):
        return "visa"
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if digits.startswith("6011") or two == 65 or 644 <= int(digits[:3] or 0) <= 649:
        return "discover"
    if 622126 <= six <= 622925:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38) or 300 <= int(digits[:3] or 0) <= 305:
        return "diners"
    if two == 62:
        return "unionpay"
    return "unknown"


def is_expired(exp_month: int, exp_year: int, today: _dt.date) -> bool:
    """A card is valid through the last day of its expiry month."""
    return (exp_year, exp_month) < (today.year, today.month)


def evaluate(digits: str, exp_month: int, exp_year: int, today: _dt.date) -> Behaviour:
    """The simulator's decision for a card, before fault injection.

    Order matters and is documented in docs/simulator.md: a number failing Luhn is
    ``invalid_number``; then a past expiry is ``expired_card`` (for every card, test
    cards included); then the test-card table; any other card is approved.
    """
    if not luhn_valid(digits):
        return Behaviour(Action.DECLINE, "invalid_number")
    if is_expired(exp_month, exp_year, today):
        return Behaviour(Action.DECLINE, "expired_card")
    return TEST_CARDS.get(digits, _APPROVE)
