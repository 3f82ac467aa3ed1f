"""Refunds (SPEC §4): partial or full, idempotent at the processor by reference.

The refunded total can never exceed what was received (charged, or captured: a partial
capture received less than the intent's amount), even under concurrent calls: the amount is
*reserved* on the intent by one conditional statement (``amount_refunded + x <=
amount_received``) before the processor is asked, and released again only if the processor
refuses. So ``amountRefunded`` counts refunds that succeeded or are still
pending at the processor.
"""
from __future__ import annotations

__all__: list[str] = []
