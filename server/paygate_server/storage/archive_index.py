"""The archive's index by intent, kept in the database (``archive_index``).

One row per (intent, segment): archive segment ``segment`` holds the intent's changes with
sequences ``first_seq..last_seq``. The archive consumer records a segment's rows with one
statement after writing the segment and before its manifest entry, so a
segment with an entry is indexed (:mod:`paygate_server.cdc.index` says why it lives here
and not in the archive).

A row is a hint that may say more than the segment holds, never less: a segment number is
reused after a crash before its entry, and a second record for the same (intent, segment)
widens the range (smallest first, largest last) instead of replacing it. Readers read the
segment and keep the intent's changes; stale rows cost a read, never a wrong answer.
"""
from __future__ import annotations

from collections.abc import Mapping

from paygate_server import jsoncodec
from paygate_server.storage.engine import Database
from paygate_server.storage.statements import Sql, execute, fetch_all

__all__ = ["ArchiveIndex", "SeqRange"]

SeqRange = tuple[int, int]  # (first sequence, last sequence)

# One statement per segment on either database, its rows as arrays (PostgreSQL) or a JSON
# array of [intent_id, first_seq, last_seq] (SQLite). (WHERE true: SQLite's rule for an
# upsert clause after INSERT ... SELECT.)
_RECORD_SQLITE = Sql("""
INSERT INTO archive_index (intent_id, segment, first_seq, last_seq)
SELECT json_extract(value, '$[0]'), :segment, json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(:rows) WHERE true
ON CONFLICT (intent_id, segment) DO UPDATE
  SET first_seq = min(first_seq, excluded.first_seq), last_seq = max(last_seq, excluded.last_seq)
""")
_RECORD_PG = Sql("""
INSERT INTO archive_index (intent_id, segment, first_seq, last_seq)
SELECT t.intent_id, :segment::bigint, t.first_seq, t.last_seq
FROM unnest(:intent_ids::text[], :firsts::bigint[], :lasts::bigint[]) AS t(intent_id, first_seq, last_seq)
ON CONFLICT (intent_id, segment) DO UPDATE
  SET first_seq = LEAST(archive_index.first_seq, EXCLUDED.first_seq),
      last_seq = GREATEST(archive_index.last_seq, EXCLUDED.last_seq)
""")
_OF_INTENT = Sql("SELECT segment, first_seq, last_seq FROM archive_index WHERE intent_id = :intent_id"
                 " ORDER BY segment")
_OF_SEGMENT = Sql("SELECT intent_id, first_seq, last_seq FROM archive_index WHERE segment = :segment")


class ArchiveIndex:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        """The database the index lives in (the archive consumer reads its restores there)."""
        return self._db

    async def record(self, segment: int, ranges: Mapping[str, SeqRange]) -> None:
        """Record that ``segment`` holds each intent's changes in its range (one transaction)."""
        if not ranges:
            return
        async with self._db.write() as conn:
            if self._db.is_sqlite:
                rows = jsoncodec.dumps([[intent_id, first, last] for intent_id, (first, last) in ranges.items()]).decode()
                await execute(conn, _RECORD_SQLITE, segment=segment, rows=rows)
            else:
                await execute(conn, _RECORD_PG, segment=segment, intent_ids=list(ranges),
                              firsts=[first for first, _ in ranges.values()],
                              lasts=[last for _, last in ranges.values()])

    async def of_intent(self, intent_id: str) -> list[tuple[int, int, int]]:
        """``(segment, first_seq, last_seq)`` of every segment holding the intent, by segment."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _OF_INTENT, intent_id=intent_id)
        return [(int(r["segment"]), int(r["first_seq"]), int(r["last_seq"])) for r in rows]

    async def of_segment(self, segment: int) -> dict[str, SeqRange]:
        """The intents ``segment`` is recorded to hold, with their ranges."""
        async with self._db.read() as conn:
            rows = await fetch_all(conn, _OF_SEGMENT, segment=segment)
        return {str(r["intent_id"]): (int(r["first_seq"]), int(r["last_seq"])) for r in rows}
