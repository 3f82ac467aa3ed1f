"""Outcomes a processor contradicted after they settled (``late_outcomes``,
storage/schema_processors.py): recorded once per operation and contradicting status, listed
open first for the operator, marked handled by one.

:class:`LateOutcomes` is the payment store's side (a part of
:class:`~paygate_server.storage.payments.SqlPaymentStore`); :func:`mark_handled` runs in
the console's transaction, so that the mark and the record of who made it commit together.
"""
from __future__ import annotations

from dataclasses import asdict

from paygate_server.storage.engine import Database
from paygate_server.storage.port import LateOutcome
from paygate_server.storage.statements import Connection, Sql, execute, fetch_all

__all__ = ["LateOutcomes", "mark_handled"]

# The same notification delivered again (Adyen retries until acknowledged, and may send a
# batch twice) meets the unique (object_id, processor_status): nothing more is recorded.
_RECORD = Sql(
    "INSERT INTO late_outcomes (kind, object_id, intent_id, merchant_id, connector, gateway_status,"
    " processor_status, processor_text, received_at)"
    " VALUES (:kind, :object_id, :intent_id, :merchant_id, :connector, :gateway_status, :processor_status,"
    " :processor_text, :received_at) ON CONFLICT DO NOTHING"
)
_COLUMNS = ("id, kind, object_id, intent_id, merchant_id, connector, gateway_status, processor_status,"
            " processor_text, received_at, handled_at, handled_by")
# Open ones first (NULL handled_at sorts first written this way on both databases), each
# group newest first: what needs an operator is at the top.
_LIST = Sql(f"SELECT {_COLUMNS} FROM late_outcomes"
            " ORDER BY CASE WHEN handled_at IS NULL THEN 0 ELSE 1 END, received_at DESC, id DESC LIMIT :limit")
_MARK_HANDLED = Sql("UPDATE late_outcomes SET handled_at = :now, handled_by = :operator_id"
                    " WHERE id = :id AND handled_at IS NULL")


class LateOutcomes:
    _db: Database

    async def record_late_outcome(self, late: LateOutcome) -> bool:
        """Record it; False when this operation's contradiction is recorded already."""
        fields = asdict(late)
        for name in ("id", "handled_at", "handled_by"):
            del fields[name]
        async with self._db.write() as conn:
            return await execute(conn, _RECORD, **fields) == 1

    async def late_outcomes(self, *, limit: int) -> list[LateOutcome]:
        """Open ones first, then those handled; newest first in each."""
        async with self._db.read_one() as conn:
            return [LateOutcome(**r) for r in await fetch_all(conn, _LIST, limit=limit)]


async def mark_handled(conn: Connection, late_id: int, operator_id: str, now: int) -> bool:
    """Mark one handled; False if there is no such open one (handled already, or no such id)."""
    return await execute(conn, _MARK_HANDLED, id=late_id, operator_id=operator_id, now=now) == 1
