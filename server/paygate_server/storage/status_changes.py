"""What an intent's status stream reads (SPEC §4 ``…/status/stream``, the checkout's too):
the intent where the stream starts, then each wake-up's new changes from ``change_log``.

A stream must show every status the intent went through, in order — also those that came
and went between two of its wake-ups (``in_progress`` between ``created`` and the outcome)
— so it reads the intent's history, not its row: the changes after the last one it saw,
by the per-intent sequence (``intent_seq``, gap-free, in commit order: change ``k+1`` is
written under the intent's row lock after ``k`` committed).

Cost: a wake-up is one statement, like the row's look-up it replaces: the intent's head
(``change_log_heads``, primary key) and its changes after ``after_seq``
(``ix_change_log_intent_seq``), only the intent's own rows' snapshots sent back. On
PostgreSQL the log is partitioned by id and a look-up by intent visits every partition
(storage/change_log_partitions.py), so once the stream has seen one change its later reads
also say ``id >=`` the start of that change's partition: an intent's change ``k+1`` takes
its id after ``k`` committed, so it has a larger id, and the partitions below are pruned.
Until then the floor is a guess — the id sequence's position when the stream began, read by
its start — which a change in flight then can be below: the read then finds a hole in the
sequence numbers and is made again without the floor (:meth:`StatusChanges.after`).
SQLite's log is one table: the intent's index alone.

Pruning (docs/history.md "Retention") takes changes by id and age, whatever the intent's
status, so an intent idle longer than the retention may have no change left in the log:
the stream's start is therefore the intent's row (never pruned) and its head's sequence
(never pruned), read together in one statement. A wake-up's answer carries the head too,
so changes pruned before the stream read them (a retention shorter than the stream's
pause) show as a hole between ``after_seq`` and the head, never as silence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.storage.change_log_partitions import PARTITION_IDS
from paygate_server.storage.engine import Database
from paygate_server.storage.payments import COLUMNS
from paygate_server.storage.port import Row
from paygate_server.storage.statements import Sql, fetch_one, fetch_tuples

__all__ = ["IntentChanges", "StatusChanges"]

# The intent (the merchant's only) and its head's sequence, from the same consistent read;
# on PostgreSQL also the change-log id sequence's position then: the first floor's guess.
_START = (
    f"SELECT {', '.join('i.' + c for c in COLUMNS.split(', '))}, h.last_seq AS head_seq, {{id_now}} AS id_now"
    " FROM payment_intents i LEFT JOIN change_log_heads h ON h.intent_id = i.id"
    " WHERE i.id = :intent_id AND i.merchant_id = :merchant_id"
)
_SQLITE_START = Sql(_START.format(id_now="0"))
_PG_START = Sql(_START.format(id_now="(SELECT last_value FROM change_log_id_seq)"))
# One row per change after :after_seq (none: one row of NULL change columns), the head first
# in every row. Only the intent's own rows' snapshots come back: attempts and refunds move
# the sequence on but carry no status of the intent (the intent's row changes with them,
# in the same transaction, when its status does).
_CHANGES = """
SELECT h.last_seq, c.id, c.intent_seq, CASE WHEN c.entity = 'payment_intent' THEN c.data END
FROM change_log_heads h
LEFT JOIN change_log c ON c.intent_id = :intent_id AND c.intent_seq > :after_seq{bound}
WHERE h.intent_id = :intent_id
ORDER BY c.intent_seq
"""
_SQLITE_CHANGES = Sql(_CHANGES.format(bound=""))
_PG_CHANGES = Sql(_CHANGES.format(bound=" AND c.id >= :id_floor"))


@dataclass(frozen=True, slots=True)
class IntentChanges:
    """A wake-up's read: the intent's rows as each change after ``after_seq`` still in the
    log left them (oldest first), the head's sequence, the id of the last change read, and
    whether the log held every change from ``after_seq + 1`` to the head (``complete``).
    Pruning takes the oldest ids first, so what it took from them is a run at their start."""

    rows: list[dict[str, Any]]
    head_seq: int
    last_id: int
    complete: bool


class StatusChanges:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._start, self._changes = (_SQLITE_START, _SQLITE_CHANGES) if db.is_sqlite else (_PG_START, _PG_CHANGES)

    async def start(self, merchant_id: str, intent_id: str) -> tuple[Row, int, int] | None:
        """The intent as it is (None: not the merchant's), its history's last sequence, and
        an id the changes to come are very likely above (:meth:`after`'s ``guessed``)."""
        async with self._db.read_one() as conn:
            found = await fetch_one(conn, self._start, intent_id=intent_id, merchant_id=merchant_id)
        if found is None:
            return None
        row = dict(found)
        return row, int(row.pop("head_seq") or 0), int(row.pop("id_now") or 0)

    async def after(self, intent_id: str, after_seq: int, after_id: int, *, guessed: bool = False) -> IntentChanges:
        """The intent's changes after sequence ``after_seq``; ``after_id``: an id every one of
        them is above (the last change the caller read; 0: none yet) — or, ``guessed``,
        very likely above: the id sequence's position when the stream began (:meth:`start`).
        A change in flight then took its id before, perhaps in the partition below; then the
        read misses it, sees the hole, and reads again without the floor — the visit of every
        partition that the guess spares the stream's first read otherwise."""
        read = await self._read(intent_id, after_seq, after_id)
        if guessed and after_id and not read.complete:
            read = await self._read(intent_id, after_seq, 0)
        return read

    async def _read(self, intent_id: str, after_seq: int, after_id: int) -> IntentChanges:
        params: dict[str, Any] = {"intent_id": intent_id, "after_seq": after_seq}
        if self._changes is _PG_CHANGES:
            # The start of the partition after_id is in (at the default width): the
            # partitions below are pruned, and inside that one the primary key's range is
            # the partition's rows so far, so the planner keeps to the intent's index. With
            # after_id itself as the bound it took the primary key (measured: few rows
            # above the newest ids), which reads every change written since the last read.
            params["id_floor"] = after_id - after_id % PARTITION_IDS
        async with self._db.read_one() as conn:
            found = await fetch_tuples(conn, self._changes, **params)
        if not found:  # no head: nothing to go by
            return IntentChanges([], after_seq, after_id, complete=False)
        head = int(found[0][0])
        rows, seq, last_id, complete = [], after_seq, after_id, True
        for _, change_id, change_seq, data in found:
            if change_id is None:
                continue
            complete = complete and change_seq == seq + 1
            seq, last_id = change_seq, change_id
            if data is not None:
                rows.append(jsoncodec.loads(data))
        return IntentChanges(rows, head, last_id, complete=complete and seq == head)
