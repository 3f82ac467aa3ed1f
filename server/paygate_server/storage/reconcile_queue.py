"""The reconciler's queue: a row per processor operation whose outcome is not known yet.

A check is added in the transaction that records the operation (before the processor hears
of it), moved when a look-up answers "still unknown", and dropped in the transaction that
settles the operation. The functions taking a ``conn`` are those steps, run inside the
payment store's transactions; :class:`ReconcileQueue` is the store's reading and leasing
side (a part of :class:`~paygate_server.storage.payments.SqlPaymentStore`).
"""
from __future__ import annotations

from typing import Any

from paygate_server.storage.engine import Database
from paygate_server.storage.port import Check
from paygate_server.storage.statements import Connection, Sql, execute, fetch_all, fetch_one

__all__ = ["ReconcileQueue", "add_check", "defer_check", "drop_check"]

_ADD_CHECK = Sql(
    "INSERT INTO reconcile_queue (kind, object_id, intent_id, merchant_id, due_at, checks, last_result,"
    " created_at) VALUES (:kind, :object_id, :intent_id, :merchant_id, :due_at, :checks, :last_result, :now)"
)
_MOVE_CHECK = Sql("UPDATE reconcile_queue SET due_at = :due_at, checks = :checks, last_result = :last_result"
                  " WHERE kind = :kind AND object_id = :object_id")
# The request's own answer moves its check only while no reconciler has taken it (see defer_check).
_MOVE_UNTAKEN_CHECK = Sql(f"{_MOVE_CHECK.text} AND checks = 0")
_HAS_CHECK = Sql("SELECT 1 AS one FROM reconcile_queue WHERE kind = :kind AND object_id = :object_id")
_DROP_CHECK = Sql("DELETE FROM reconcile_queue WHERE kind = :kind AND object_id = :object_id")
_CHECK_COLUMNS = "kind, object_id, intent_id, merchant_id, due_at, checks, last_result, created_at"
_DUE_CHECKS = Sql(f"SELECT {_CHECK_COLUMNS} FROM reconcile_queue WHERE due_at <= :now ORDER BY due_at LIMIT :limit")
_NEXT_DUE = Sql("SELECT min(due_at) AS due_at FROM reconcile_queue")
# A lease counts the check it begins: a check taken is never "not checked yet" again.
_LEASE_CHECK = Sql("UPDATE reconcile_queue SET due_at = :until, checks = checks + 1"
                   " WHERE kind = :kind AND object_id = :object_id AND due_at = :due_at")
_ALL_CHECKS = Sql(f"SELECT {_CHECK_COLUMNS} FROM reconcile_queue ORDER BY created_at")
_CHECK_OF = Sql(f"SELECT {_CHECK_COLUMNS} FROM reconcile_queue WHERE kind = :kind AND object_id = :object_id")


async def add_check(conn: Connection, kind: str, object_id: str, intent_id: str, merchant_id: str,
                    due_at: int, now: int) -> None:
    await execute(conn, _ADD_CHECK, kind=kind, object_id=object_id, intent_id=intent_id,
                  merchant_id=merchant_id, due_at=due_at, checks=0, last_result=None, now=now)


async def defer_check(conn: Connection, check: dict[str, Any], intent_id: str, merchant_id: str, now: int) -> None:
    """Move the operation's check (``kind``, ``object_id``, ``due_at``, ``checks``,
    ``last_result``), or add it if it has none (an operation whose request learnt nothing).

    ``checks`` 0 is the request's own "no answer": it moves the check only while no
    reconciler has taken it (a lease counts the check). Written later — the request's write
    held up past the in-flight grace — it would bring forward a check the reconciler had set
    after sending the operation again, and the next check could send it once more while
    that resend may still be on its way."""
    if not await execute(conn, _MOVE_UNTAKEN_CHECK if check["checks"] == 0 else _MOVE_CHECK, **check) \
            and await fetch_one(conn, _HAS_CHECK, kind=check["kind"], object_id=check["object_id"]) is None:
        await execute(conn, _ADD_CHECK, **check, intent_id=intent_id, merchant_id=merchant_id, now=now)


async def drop_check(conn: Connection, kind: str, object_id: str) -> None:
    await execute(conn, _DROP_CHECK, kind=kind, object_id=object_id)


class ReconcileQueue:
    _db: Database

    async def due_checks(self, now: int, limit: int) -> list[Check]:
        async with self._db.read_one() as conn:
            return [Check(**r) for r in await fetch_all(conn, _DUE_CHECKS, now=now, limit=limit)]

    async def next_check_due(self) -> int | None:
        async with self._db.read_one() as conn:
            row = await fetch_one(conn, _NEXT_DUE)
        return None if row is None else row["due_at"]

    async def lease_check(self, check: Check, until: int) -> bool:
        """Take a due check for ``until`` (µs): two reconcilers never work one at once."""
        async with self._db.write() as conn:
            return await execute(conn, _LEASE_CHECK, kind=check.kind, object_id=check.object_id,
                                 due_at=check.due_at, until=until) == 1

    async def all_checks(self) -> list[Check]:
        async with self._db.read_one() as conn:
            return [Check(**r) for r in await fetch_all(conn, _ALL_CHECKS)]

    async def check_of(self, kind: str, object_id: str) -> Check | None:
        """The queue's row of one operation (None: its outcome is known, or no such one)."""
        async with self._db.read_one() as conn:
            row = await fetch_one(conn, _CHECK_OF, kind=kind, object_id=object_id)
        return None if row is None else Check(**row)
