"""A charge attempt (a ``transactions`` row) in its wire shape (camelCase, SPEC §4).

The attempt object appears in an intent's history (``attempt.created``/``.updated``). It
says what the processor was asked and what it answered, and nothing a merchant must not
hold: no processor reference, connector, authorization code or raw processor message, and
of the card only brand, last 4 and expiry (the table holds no number or CVC; its
fingerprint and vault id never reach the change history, see ``storage/capture.py``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paygate_server.clock import to_rfc3339

__all__ = ["ATTEMPT_KINDS", "render_attempt"]

ATTEMPT_KINDS = ("charge", "authorization", "capture", "void")


def _card(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["card_brand"] is None and row["card_last4"] is None:
        return None
    return {"brand": row["card_brand"], "last4": row["card_last4"],
            "expMonth": row["card_exp_month"], "expYear": row["card_exp_year"]}


def render_attempt(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "attemptId": row["id"],
        "paymentIntentId": row["intent_id"],
        # Every attempt is a charge until manual capture brings a ``kind`` column; a row
        # (or an archived snapshot) without one is a charge.
        "kind": row.get("kind") or "charge",
        "status": row["status"],
        "amount": row["amount"],
        "currency": row["currency"],
        "card": _card(row),
        "declineCode": row["decline_code"],
        "createdAt": to_rfc3339(row["created_at"]),
        "updatedAt": to_rfc3339(row["updated_at"]),
    }
