"""Many payments' rows written at once: the console's load check and its tests seed with it
(tests/support/console_seed.py, docs/perf/console_load.py).

Not a path of the gateway: rows go in as given (dicts of column values), in batches of
one transaction each, with the tables' ordinary inserts — so the change-log capture
triggers fire and every intent gets its history as if it had been made one by one. The
caller makes the rows consistent (an attempt's intent exists, a refund's attempt too).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table

from paygate_server.storage.engine import Database
from paygate_server.storage.schema import (
    merchants,
    payment_intents,
    reconcile_queue,
    refunds,
    transactions,
)

__all__ = ["insert_payments"]

Rows = Sequence[dict[str, Any]]


async def insert_payments(db: Database, *, merchant_rows: Rows = (), intents: Rows = (), attempts: Rows = (),
                          refund_rows: Rows = (), queue_rows: Rows = (), batch: int = 5000) -> None:
    """Insert the rows, parents first, ``batch`` rows per transaction."""
    tables: list[tuple[Table, Rows]] = [(merchants, merchant_rows), (payment_intents, intents),
                                        (transactions, attempts), (refunds, refund_rows),
                                        (reconcile_queue, queue_rows)]
    for table, rows in tables:
        for start in range(0, len(rows), batch):
            async with db.write() as conn:
                await conn.execute(table.insert(), list(rows[start:start + batch]))
