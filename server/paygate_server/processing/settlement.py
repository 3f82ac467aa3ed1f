"""Settlement reconciliation: the processor's report for a day against our records.

Every mismatch is reported, none is "fixed" here — a mismatch is for a person to look at:

- ``missing_in_gateway``: the processor settled a reference we have no record of;
- ``missing_at_processor``: we recorded a success the processor did not settle (that day or
  the next, to allow for a charge made just before midnight and settled just after);
- ``status_differs``: the processor settled it, but our record is not ``succeeded``;
- ``amount_differs``: amount or currency disagree.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from paygate_server.clock import parse_day
from paygate_server.processing.connectors import Connector, SettlementRecord
from paygate_server.storage.port import PaymentStore

__all__ = ["PROBLEMS", "DayNotYet", "Mismatch", "NotADay", "reconcile_settlement", "settlement_day"]

_US = 1_000_000
# The kinds of mismatch, in the order the console lists them.
PROBLEMS = ("missing_in_gateway", "missing_at_processor", "status_differs", "amount_differs")


class NotADay(ValueError):
    """Not a day written ``YYYY-MM-DD``."""


class DayNotYet(ValueError):
    """A day after today (UTC): no processor has settled anything on it."""


def settlement_day(text: str, today: dt.date | None = None) -> dt.date:
    """The day a settlement comparison is asked for — the one rule of the console and of
    ``paygate reconcile settlement``: a day ``clock.parse_day`` reads (``YYYY-MM-DD`` only),
    today (UTC) or earlier. Each caller words the refusal its own way."""
    day = parse_day(text)
    if day is None:
        raise NotADay(text)
    if day > (today or dt.datetime.now(dt.UTC).date()):
        raise DayNotYet(text)
    return day


@dataclass(frozen=True)
class Mismatch:
    kind: str  # charge | capture | refund
    problem: str
    reference: str
    payment_intent_id: str | None
    gateway: dict[str, Any] | None
    processor: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` item: field names camelCase, as everywhere on the wire (SPEC §2)."""
        return {"kind": self.kind, "problem": self.problem, "reference": self.reference,
                "paymentIntentId": self.payment_intent_id, "gateway": self.gateway, "processor": self.processor}


def _day_bounds(day: dt.date) -> tuple[int, int]:
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(start.timestamp()) * _US, int((start + dt.timedelta(days=1)).timestamp()) * _US


def _ours(row: Any) -> dict[str, Any]:
    return {"status": row["status"], "amount": row["amount"], "currency": row["currency"], "id": row["id"]}


def _proc(record: SettlementRecord) -> dict[str, Any]:
    return {"amount": record.amount, "currency": record.currency, "merchantId": record.merchant_id}


async def reconcile_settlement(store: PaymentStore, connector: Connector, day: dt.date,
                               route: str | None = None) -> tuple[list[Mismatch], dict[str, int]]:
    """``route``: whose records ours are compared with — a processor account (``pa_…``),
    or by default the connector's name (the gateway's default processor)."""
    report = await connector.settlement_report(day)
    next_day = {r.reference for r in await connector.settlement_report(day + dt.timedelta(days=1))}
    at_processor = {(r.kind, r.reference): r for r in report}
    start, end = _day_bounds(day)
    mismatches: list[Mismatch] = []
    ours: dict[tuple[str, str], Any] = {}
    for table in ("charge", "capture", "refund"):
        refs = [ref for (k, ref) in at_processor if k == table]
        # Only what went through this processor (a gateway may have several).
        for found in await store.settled_records(table, route or connector.name, refs, start, end):
            ours[(table, found["reference"])] = found

    for key, record in at_processor.items():
        kind, reference = key
        row = ours.get(key)
        if row is None:
            mismatches.append(Mismatch(kind, "missing_in_gateway", reference, record.payment_intent_id, None, _proc(record)))
            continue
        gateway = _ours(row)
        if row["status"] != "succeeded":
            mismatches.append(Mismatch(kind, "status_differs", reference, row["intent_id"], gateway, _proc(record)))
        elif (row["amount"], row["currency"]) != (record.amount, record.currency):
            mismatches.append(Mismatch(kind, "amount_differs", reference, row["intent_id"], gateway, _proc(record)))
    for (ours_kind, reference), row in ours.items():
        if (ours_kind, reference) in at_processor or row["status"] != "succeeded" or not start <= row["created_at"] < end:
            continue
        if reference in next_day:
            continue
        mismatches.append(Mismatch(ours_kind, "missing_at_processor", reference, row["intent_id"], _ours(row), None))
    counts = {"processorRecords": len(report),
              "gatewayRecords": sum(1 for r in ours.values() if r["status"] == "succeeded"),
              "mismatches": len(mismatches)}
    return mismatches, counts
