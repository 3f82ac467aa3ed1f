"""The refund's wire shape (SPEC §4), shared by the refund endpoint, history and webhooks.

``failureReason`` (null unless ``failed``): why the refund failed, in the processor's words
(or the connector's, when it sent nothing) — the text processing/settle.py kept, with no
card number in it."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_refund"]


def render_refund(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"refundId": row["id"], "paymentIntentId": row["intent_id"], "amount": row["amount"],
            "currency": row["currency"], "status": row["status"], "reason": row["reason"],
            "failureReason": row["failure_reason"]}
