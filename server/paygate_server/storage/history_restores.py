"""The database's side of resuming the history after a restore (``cdc/restore.py``).

A database restored from a backup older than the archive hands out change ids, and numbers
intents' changes, from where the backup stood, while the archive already holds changes under
the ids and sequence numbers that follow. :meth:`RestoreStore.resume` moves both past what
the archive holds, repositions the archive consumer and records what the restore lost
(``history_restores``), in one transaction: a crash leaves everything as it was. (On
PostgreSQL ``setval`` is not transactional: after a rollback the ids stay advanced, which
only skips ids; the record is what says the restore was handled.)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import to_rfc3339
from paygate_server.storage.change_log import _OLDEST_RUNNING_EXPR
from paygate_server.storage.changes import Position
from paygate_server.storage.engine import Database
from paygate_server.storage.relay_offsets import ensure_offset, save_offset

__all__ = ["RestoreStore", "RestoreRecord", "PG_ID_HIGH_WATER"]

# The largest change id ever handed out (committed or not): never lower than any id the
# archive got from this database — unless the database went back to a backup.
PG_ID_HIGH_WATER = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM change_log_id_seq"
_SQLITE_ID_HIGH_WATER = text("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'change_log'")
# AUTOINCREMENT's counter is an ordinary row (SQLite allows writing it); a database that
# never captured a change has none yet.
_SQLITE_ADVANCE_IDS = text("""
INSERT OR REPLACE INTO sqlite_sequence (rowid, name, seq)
SELECT (SELECT rowid FROM sqlite_sequence WHERE name = 'change_log'), 'change_log', :through
WHERE :through > (SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'change_log')
""")
_PG_ADVANCE_IDS = text(f"SELECT setval('change_log_id_seq', greatest(:through, ({PG_ID_HIGH_WATER})))")
# Only ever forward: an intent the database already numbered further keeps its head.
_ADVANCE_HEAD = text("UPDATE change_log_heads SET last_seq = :seq WHERE intent_id = :intent_id AND last_seq < :seq")
_PG_OLDEST_RUNNING = text(f"SELECT {_OLDEST_RUNNING_EXPR} FROM (SELECT pg_current_snapshot() AS snap) s")
_RECORD = text("""
INSERT INTO history_restores (recorded_at, first_id, last_id, changes, intents, archive_segment, resumed_after_id)
VALUES (:recorded_at, :first_id, :last_id, :changes, :intents, :archive_segment, :resumed_after_id)
""")
_RECORDS = text("SELECT recorded_at, first_id, last_id, changes, intents, archive_segment, resumed_after_id"
                " FROM history_restores ORDER BY id")


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    """A restore as recorded: the archive's changes the database lost (``changes`` of them,
    ids ``first_id..last_id``, touching ``intents`` intents, all in segments up to
    ``archive_segment``), and the id the change log went on after (``resumed_after_id``)."""

    recorded_at: int
    first_id: int
    last_id: int
    changes: int
    intents: int
    archive_segment: int
    resumed_after_id: int

    def to_json(self) -> dict[str, Any]:
        return {"recordedAt": to_rfc3339(self.recorded_at), "firstId": self.first_id, "lastId": self.last_id,
                "changes": self.changes, "intents": self.intents, "archiveSegment": self.archive_segment,
                "resumedAfterId": self.resumed_after_id}


class RestoreStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def id_high_water(self) -> int:
        """The largest change id this database has handed out (0: none yet)."""
        async with self._db.read() as conn:
            return await self._high_water(conn)

    async def _high_water(self, conn: AsyncConnection) -> int:
        sql = _SQLITE_ID_HIGH_WATER if self._db.is_sqlite else text(PG_ID_HIGH_WATER)
        return int((await conn.execute(sql)).scalar_one() or 0)

    async def records(self) -> list[RestoreRecord]:
        async with self._db.read() as conn:
            return [RestoreRecord(*map(int, row)) for row in await conn.execute(_RECORDS)]

    async def resumed_through_segment(self) -> int:
        """The archive's last segment when the latest restore was recorded (0: none): its
        entries were written by the database before the restore, not by this one."""
        records = await self.records()
        return max((r.archive_segment for r in records), default=0)

    async def resume(self, record: RestoreRecord, heads: Mapping[str, int], *, consumer: str) -> int:
        """In one transaction: change ids go on after ``record.resumed_after_id``, each intent in
        ``heads`` numbers its next change after the sequence given, ``consumer`` (the archive's)
        stands after everything the database holds now, and ``record`` is kept. Returns the
        id the change log now stands at."""
        async with self._db.write() as conn:
            through = record.resumed_after_id
            await conn.execute(_SQLITE_ADVANCE_IDS if self._db.is_sqlite else _PG_ADVANCE_IDS, {"through": through})
            if heads:
                await conn.execute(_ADVANCE_HEAD, [{"intent_id": k, "seq": v} for k, v in heads.items()])
            # Everything the database holds is in the archive, and the archive's own position
            # belongs to the database before the restore (on PostgreSQL, to other transaction
            # ids): the consumer starts after what is here now. SQLite: by id. PostgreSQL: at
            # the oldest transaction still running, so every change committed from now on is
            # delivered, whatever its transaction id compared with the old database's.
            high = await self._high_water(conn)
            if self._db.is_sqlite:
                position = Position(0, None, high)
            else:
                position = Position(int((await conn.execute(_PG_OLDEST_RUNNING)).scalar_one()), None, 0)
            await ensure_offset(conn, consumer)
            await save_offset(conn, consumer, position, 0)
            await conn.execute(_RECORD, {"recorded_at": record.recorded_at, "first_id": record.first_id,
                                         "last_id": record.last_id, "changes": record.changes,
                                         "intents": record.intents, "archive_segment": record.archive_segment,
                                         "resumed_after_id": high})
        return high
