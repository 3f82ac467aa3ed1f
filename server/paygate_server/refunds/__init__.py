"""Refunds (SPEC §4): partial or full, idempotent at the processor by reference.

The refunded total can never exceed the charge, even under concurrent calls: the amount is
*reserved* on the intent by one conditional statement
(``amount_refunded + x <= amount``) before the processor is asked, and released again only
if the processor refuses. So ``amountRefunded`` counts refunds that succeeded or are still
pending at the processor.
"""
from __future__ import annotations

__all__: list[str] = []
