"""The refund's wire shape (SPEC §4), shared by the refund endpoint, history and webhooks."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_refund"]


def render_refund(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"refundId": row["id"], "paymentIntentId": row["intent_id"], "amount": row["amount"],
            "currency": row["currency"], "status": row["status"], "reason": row["reason"]}
