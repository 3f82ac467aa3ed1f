"""The change log's one pruning path, and what bounds it, in the database (SPEC §8).

What may go is always a prefix of ids, "everything with id <= B", so deletes are ranges
and "pruned through P" says all there is to say about what left. This module answers the
database's parts of the bound — which ids are final, which every relay consumer has, which
are past retention — and removes ranges; :mod:`paygate_server.cdc.prune` adds the archive's
part (verified segments) and decides.

The guard (storage/capture.py): the DELETE trigger lets a row go only when its id is at or
below ``change_log_prune.through_id``. Every removal below sets it, deletes, records how far
pruning got, and resets it to 0 — one transaction, so a crash anywhere rolls all of it back
and no other transaction ever sees the guard open. The same row lock serializes pruners.

PostgreSQL drops whole partitions instead (storage/change_log_partitions.py): a partition
drop fires no row trigger, so it is the pruning path there — only this module drops them.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.clock import now_us
from paygate_server.storage import change_log_partitions as parts
from paygate_server.storage.change_log import _COLUMNS, _OLDEST_RUNNING_EXPR
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.engine import Database
from paygate_server.storage.history_restores import PG_ID_HIGH_WATER

__all__ = ["Cursor", "PruneState", "ConsumerBound", "HistoryPruneStore", "LogSize", "PruneMoved"]

# Lock waits of the pruning path on PostgreSQL: a partition drop needs the table for an
# instant, and must not queue behind a long transaction with every insert queued behind it.
_LOCK_TIMEOUT = "SET LOCAL lock_timeout = '5s'"


class PruneMoved(RuntimeError):
    """Another pruner got further meanwhile (this one's plan is stale: run again)."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where pruning's reading of the archive resumes: the first segment that may hold a
    change above ``pruned_through``, the hash its manifest entry must chain to, and (once
    pruning read it) that entry's own hash: pruning may have taken some of its changes."""

    next_segment: int = 1
    prev_hash: str = "0" * 64  # the archive's genesis (cdc/archive.py GENESIS)
    segment_hash: str | None = None


@dataclass(frozen=True, slots=True)
class PruneState:
    pruned_through: int  # every change with an id at or below it has left the database
    cursor: Cursor
    # A run that has not finished (a crash between its deletes and its record) may have
    # deleted up to here; 0 when none is open. Nothing above both ever leaves the database.
    guard_through: int = 0

    @property
    def may_be_pruned_through(self) -> int:
        return max(self.pruned_through, self.guard_through)


@dataclass(frozen=True, slots=True)
class ConsumerBound:
    bound: int  # every id at or below it is delivered to every consumer
    consumer: str | None  # the consumer that set it (None: none limits it)


@dataclass(frozen=True, slots=True)
class LogSize:
    rows: int  # exact on SQLite; PostgreSQL's planner estimate (no count(*) over the partitions)
    bytes: int  # SQLite: its pages and its indexes' (dbstat); PostgreSQL: pg_total_relation_size of every partition
    pending_archive: int | None  # captured, not yet covered by the archive consumer (None: no archive yet)


_SQLITE_FLOOR = """
INSERT INTO change_log_floor (intent_id, last_seq)
SELECT intent_id, max(intent_seq) FROM {table} WHERE id > :lo AND id <= :hi GROUP BY intent_id
ON CONFLICT (intent_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)
"""
_PG_FLOOR = """
INSERT INTO change_log_floor (intent_id, last_seq)
SELECT intent_id, max(intent_seq) FROM {table} WHERE id > :lo AND id <= :hi GROUP BY intent_id
ON CONFLICT (intent_id) DO UPDATE SET last_seq = GREATEST(change_log_floor.last_seq, EXCLUDED.last_seq)
"""
_OPEN_GUARD = text("UPDATE change_log_prune SET through_id = :hi WHERE id = 1")
_CLOSE_GUARD = text("UPDATE change_log_prune SET through_id = 0, pruned_through = :through,"
                    " next_segment = :next_segment, segment_prev = :segment_prev, segment_hash = :segment_hash,"
                    " updated_at = :now WHERE id = 1")
_STATE = text("SELECT pruned_through, next_segment, segment_prev, segment_hash, through_id FROM change_log_prune WHERE id = 1")
# Inside the pruning transaction: the row lock makes a second pruner wait, then see it moved.
_STATE_LOCKED_PG = text("SELECT pruned_through FROM change_log_prune WHERE id = 1 FOR UPDATE")
_STATE_LOCKED_SQLITE = text("SELECT pruned_through FROM change_log_prune WHERE id = 1")
_ROWS = text(f"SELECT {_COLUMNS} FROM change_log WHERE id > :lo AND id <= :hi ORDER BY id")
_FIRST_RECENT = text("SELECT min(id) FROM change_log WHERE id > :lo AND id <= :hi AND created_at > :cutoff")
_MAX_ID = text("SELECT max(id) FROM change_log")
_OFFSETS = text("SELECT consumer, horizon, window_end, last_id FROM cdc_offsets ORDER BY consumer")
# The smallest id in (lo, hi] a consumer at this position has not been delivered
# (Position.covers), with an open window and without.
_PG_UNCOVERED_IN_WINDOW = text("""
SELECT min(id) FROM change_log WHERE id > :lo AND id <= :hi AND txid >= :horizon
  AND NOT (txid < :window_end AND id <= :last_id)""")
_PG_UNCOVERED = text("SELECT min(id) FROM change_log WHERE id > :lo AND id <= :hi AND txid >= :horizon")
_OLDEST = f"(SELECT {_OLDEST_RUNNING_EXPR} FROM (SELECT pg_current_snapshot() AS snap) s)"
# Read after the sequence, in a statement (and transaction) of its own: its snapshot must be
# later than the sequence's read (see final_id).
_PG_XMAX = text(f"SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, {_OLDEST}")
_PG_OLDEST = text(f"SELECT {_OLDEST}")
_PG_NEXT_ID = text(PG_ID_HIGH_WATER)


class HistoryPruneStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def partitioned(self) -> bool:
        return not self._db.is_sqlite

    async def state(self) -> PruneState:
        async with self._db.read() as conn:
            pruned, segment, prev, own, guard = (await conn.execute(_STATE)).one()
        return PruneState(int(pruned), Cursor(int(segment), str(prev), None if own is None else str(own)),
                          guard_through=int(guard or 0))

    async def final_id(self, *, wait_s: float = 10.0) -> int | None:
        """The largest id such that no change at or below it can still appear (None: no
        change yet, or — PostgreSQL — transactions that could still write one did not end
        within ``wait_s``).

        PostgreSQL takes ids before commit, so a running transaction may yet commit a
        change with a small id. Every transaction that writes a change already has its
        transaction id when it takes the change's id (the capture trigger runs after the
        captured write), so once every transaction running when the sequence was read
        has ended, no id up to that value can still appear. SQLite has one writer at a
        time: the largest committed id is final."""
        if self._db.is_sqlite:
            async with self._db.read() as conn:
                value = (await conn.execute(_MAX_ID)).scalar()
            return None if value is None else int(value)
        # The sequence first, the snapshot after, each in a transaction of its own: a
        # transaction that took an id up to ``last`` had its transaction id before that read,
        # so below the later snapshot's xmax, and is waited for. (Read in one statement, the
        # statement's snapshot came first: a transaction taking its xid and an id in between
        # was not waited for, and its change could commit below a "final" id.)
        async with self._db.read() as conn:
            last = (await conn.execute(_PG_NEXT_ID)).scalar_one()
        async with self._db.read() as conn:
            next_txid, oldest = (await conn.execute(_PG_XMAX)).one()
        deadline = time.monotonic() + wait_s
        while oldest < next_txid:
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)  # polling the server for transactions to end, bounded by wait_s
            async with self._db.read() as conn:
                oldest = (await conn.execute(_PG_OLDEST)).scalar_one()
        return int(last) if last > 0 else None

    async def consumer_bound(self, after: int, upto: int) -> ConsumerBound:
        """How far in (after, upto] every consumer in ``cdc_offsets`` has been delivered.
        Every consumer ever recorded counts, configured now or not: one that is gone blocks
        pruning until it is forgotten (:meth:`forget_consumer`)."""
        bound, limiting = upto, None
        async with self._db.read() as conn:
            offsets = (await conn.execute(_OFFSETS)).all()
            for consumer, horizon, window_end, last_id in offsets:
                if self._db.is_sqlite:
                    reach = min(int(last_id), upto)
                else:
                    params = {"lo": after, "hi": upto, "horizon": horizon}
                    if window_end is None:
                        first = (await conn.execute(_PG_UNCOVERED, params)).scalar()
                    else:
                        first = (await conn.execute(_PG_UNCOVERED_IN_WINDOW, {
                            **params, "window_end": window_end, "last_id": last_id})).scalar()
                    reach = upto if first is None else int(first) - 1
                if reach < bound:
                    bound, limiting = reach, str(consumer)
        return ConsumerBound(bound, limiting)

    async def consumers(self) -> dict[str, Position]:
        async with self._db.read() as conn:
            return {str(c): Position(int(h), None if w is None else int(w), int(li))
                    for c, h, w, li in (await conn.execute(_OFFSETS)).all()}

    async def forget_consumer(self, consumer: str) -> bool:
        """Drop a consumer's offset (one no longer configured that would block pruning for
        ever). If it runs again it starts over from the oldest change still in the database."""
        async with self._db.write() as conn:
            result = await conn.execute(text("DELETE FROM cdc_offsets WHERE consumer = :c"), {"c": consumer})
        return bool(result.rowcount)

    async def retention_bound(self, after: int, upto: int, cutoff_us: int) -> int:
        """The largest id in [after, upto] such that every change in (after, it] was captured
        at or before ``cutoff_us``."""
        async with self._db.read() as conn:
            first = (await conn.execute(_FIRST_RECENT, {"lo": after, "hi": upto, "cutoff": cutoff_us})).scalar()
        return upto if first is None else int(first) - 1

    async def rows(self, lo: int, hi: int) -> list[Change]:
        """The changes with ids in (lo, hi], by id."""
        async with self._db.read() as conn:
            return [Change(*r) for r in (await conn.execute(_ROWS, {"lo": lo, "hi": hi})).all()]

    async def _guarded_delete(self, conn: AsyncConnection, table: str, lo: int, hi: int) -> int:
        floor = _SQLITE_FLOOR if self._db.is_sqlite else _PG_FLOOR
        await conn.execute(text(floor.format(table=table)), {"lo": lo, "hi": hi})
        result = await conn.execute(text(f"DELETE FROM {table} WHERE id > :lo AND id <= :hi"), {"lo": lo, "hi": hi})
        return int(result.rowcount)

    @asynccontextmanager
    async def _pruning(self, lo: int, through: int, cursor: Cursor, fault: Any,
                       lock_timeout: bool = False) -> AsyncIterator[AsyncConnection]:
        """The one transaction that prunes the changes in (lo, through]: it checks under the
        state's lock that pruning is still at ``lo``, opens the guard for the caller's
        deletes, then records them pruned with the archive's ``cursor``. ``fault``: called
        after the deletes, before the commit (the crash tests' hook)."""
        async with self._db.write() as conn:
            if lock_timeout:
                await conn.execute(text(_LOCK_TIMEOUT))
            state = (await conn.execute(_STATE_LOCKED_SQLITE if self._db.is_sqlite else _STATE_LOCKED_PG)).one()
            if int(state[0]) != lo:
                raise PruneMoved(f"pruning moved meanwhile (pruned through {state[0]}, expected {lo})")
            await conn.execute(_OPEN_GUARD, {"hi": through})
            yield conn
            if fault is not None:
                fault()
            await conn.execute(_CLOSE_GUARD, {"through": through, "next_segment": cursor.next_segment,
                                              "segment_prev": cursor.prev_hash,
                                              "segment_hash": cursor.segment_hash, "now": now_us()})

    async def delete_range(self, lo: int, hi: int, cursor: Cursor, *, fault: Any = None) -> int:
        """Delete the changes with ids in (lo, hi] through the guard, in one transaction
        that also records them pruned; returns how many rows went."""
        async with self._pruning(lo, hi, cursor, fault) as conn:
            return await self._guarded_delete(conn, "change_log", lo, hi)

    # PostgreSQL partitions ------------------------------------------------------------

    async def partitions(self) -> tuple[list[parts.Partition], bool]:
        async with self._db.read() as conn:
            rows = [(str(n), str(b)) for n, b in (await conn.execute(text(parts.LIST_PARTITIONS))).all()]
        return parts.parse_partitions(rows)

    async def drop_partition(self, partition: parts.Partition, lo: int, cursor: Cursor, *,
                             fault: Any = None) -> int:
        """Drop ``partition`` (every id in it is at or below the bound) and, through the
        guard, the DEFAULT partition's rows up to its end; record everything below its
        end pruned. One transaction. Returns the rows that went."""
        through = partition.hi - 1
        async with self._pruning(lo, through, cursor, fault, lock_timeout=True) as conn:
            rows = int((await conn.execute(text(f"SELECT count(*) FROM {partition.name}"))).scalar_one())
            await conn.execute(text(_PG_FLOOR.format(table=partition.name)), {"lo": lo, "hi": through})
            rows += await self._guarded_delete(conn, parts.DEFAULT_PARTITION, lo, through)
            await conn.execute(text(f"DROP TABLE {partition.name}"))
        return rows

    async def ensure_partitions(self) -> list[str]:
        """Create the partitions the next ids need (PARTITIONS_AHEAD beyond the next id's);
        returns the names created."""
        existing, _ = await self.partitions()
        async with self._db.read() as conn:
            last = (await conn.execute(_PG_NEXT_ID)).scalar_one()
            default_max = (await conn.execute(text(f"SELECT max(id) FROM {parts.DEFAULT_PARTITION}"))).scalar()
        plan = parts.plan_ahead(existing, int(last) + 1, None if default_max is None else int(default_max))
        created = []
        for lo, hi in plan:
            async with self._db.write() as conn:
                await conn.execute(text(_LOCK_TIMEOUT))
                await conn.execute(text(parts.create_statement(lo, hi)))
            created.append(parts.partition_name(lo))
        return created

    # Space and size ------------------------------------------------------------------------

    async def reclaim_space(self, max_pages: int = 10_000) -> int:
        """SQLite: hand up to ``max_pages`` free pages back to the file system (the file
        shrinks; auto_vacuum=INCREMENTAL, see storage/migrate.py); returns the free pages
        left. PostgreSQL: nothing to do (a dropped partition's files go at commit)."""
        if not self._db.is_sqlite:
            return 0
        # On a driver connection of its own, in autocommit, as a script: the pragma frees one
        # page per step, and sqlite3's execute() (so SQLAlchemy too) steps a statement without
        # result columns once — one page — while executescript() steps it to the end.
        # SQLite's own lock and busy timeout order it with the writers.
        async with self._db.autocommit() as conn:
            await conn.driver.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
            async with conn.driver.execute("PRAGMA freelist_count") as cursor:
                row = await cursor.fetchone()
        return int(row[0])

    async def size(self) -> LogSize:
        async with self._db.read() as conn:
            if self._db.is_sqlite:
                rows = (await conn.execute(text("SELECT count(*) FROM change_log"))).scalar_one()
                used = (await conn.execute(text(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat"
                    " WHERE name = 'change_log' OR name LIKE 'ix_change_log%'"))).scalar_one()
            else:
                rows, used = (await conn.execute(text(
                    "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint,"
                    " coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint"
                    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'change_log'::regclass"))).one()
            archive = (await conn.execute(text(
                "SELECT horizon, window_end, last_id FROM cdc_offsets WHERE consumer = 'archive'"))).first()
            pending = None if archive is None else await _uncovered_count(conn, self._db.is_sqlite, archive)
        return LogSize(int(rows), int(used), pending)


async def _uncovered_count(conn: AsyncConnection, sqlite: bool, pos: Sequence[Any]) -> int:
    """Changes a consumer at ``pos`` (horizon, window_end, last_id) has not been delivered."""
    horizon, window_end, last_id = pos
    if sqlite:
        sql, params = "SELECT count(*) FROM change_log WHERE id > :li", {"li": last_id}
    elif window_end is None:
        sql, params = "SELECT count(*) FROM change_log WHERE txid >= :h", {"h": horizon}
    else:
        sql = "SELECT count(*) FROM change_log WHERE txid >= :h AND NOT (txid < :we AND id <= :li)"
        params = {"h": horizon, "we": window_end, "li": last_id}
    return int((await conn.execute(text(sql), params)).scalar_one())
