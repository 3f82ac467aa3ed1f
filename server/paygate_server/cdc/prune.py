"""Pruning the change log (SPEC §8, ``paygate history prune``, the gateway's schedule).

A change may leave the database only when (a) every relay consumer has it, (b) the archive
holds it in a verified segment, and (c) ``PAYGATE_HISTORY_RETENTION_S`` has passed since it
was captured — and, on PostgreSQL, when no transaction can still commit a change below it
(ids are taken before commit). All four are expressed as "every id at or below B", so what
goes is always a range above the last run's end; the bound is the smallest of them.

(b) is checked by reading, not trusted: the manifest chain must hold up to the segment, the
segment's SHA-256 and size must match its entry, and every change in the range must be in
it and equal to the database's row (ids, sequence, snapshot), and the archive's index by
intent (:mod:`.index`) must name the segment for it, before the row is deleted. A
missing, corrupt, different or unindexed segment stops the bound just before the first change it
should have held. Entries and segments are read from a cursor kept with the pruning state
(``change_log_prune.next_segment`` and the hash its entry must chain to, ``segment_prev``),
so a run reads only the entries and segments it needs, not the whole archive: the chain
before the cursor was checked by the runs that moved it there. A run that stops inside a
segment also records that segment's entry's own hash (``segment_hash``): the changes it took
from it are in the archive only, and the next run, and verify, hold the entry to it.

SQLite deletes in batches, each its own transaction (a crash loses at most the batch in
progress, which rolls back), then hands freed pages back (incremental vacuum). PostgreSQL
drops whole partitions at or below the bound (one transaction each) and creates those the
next ids need. The storage side — the guard, the queries — is
:mod:`paygate_server.storage.history_prune`.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from paygate_server.cdc.archive import (
    MANIFEST,
    ArchiveProblem,
    ArchiveReader,
    ManifestEntry,
    entry_hash,
)
from paygate_server.cdc.index import unindexed
from paygate_server.cdc.store import ObjectStore
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.faults import crash_point
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.change_log_partitions import Partition
from paygate_server.storage.changes import Change
from paygate_server.storage.engine import Database
from paygate_server.storage.history_prune import Cursor, HistoryPruneStore
from paygate_server.storage.relay_leases import ConsumerLease

__all__ = ["HistoryPruner", "PruneReport", "LEASE_NAME", "run_scheduled"]

log = logging.getLogger("paygate.cdc")

# The lease (as the relay's: one holder among all workers and hosts) for scheduled pruning.
LEASE_NAME = "history-prune"


@dataclass
class PruneReport:
    dry_run: bool
    pruned_before: int  # every id at or below it had already left
    bound: int  # every id at or below it may leave (the smallest of ``limits``)
    limits: dict[str, int | None] = field(default_factory=dict)  # None: not evaluated
    limited_by: list[str] = field(default_factory=list)
    consumer: str | None = None  # the consumer that set the consumers' limit
    archive_problem: str | None = None
    rows: int = 0  # deleted (or, dry run, that would be)
    first_id: int | None = None
    last_id: int | None = None
    partitions_dropped: list[str] = field(default_factory=list)
    partitions_created: list[str] = field(default_factory=list)
    pruned_through: int = 0  # after this run

    def to_json(self) -> dict[str, Any]:
        return {"dryRun": self.dry_run, "prunedBefore": self.pruned_before, "bound": self.bound,
                "limits": self.limits, "limitedBy": self.limited_by, "consumer": self.consumer,
                "archiveProblem": self.archive_problem, "rows": self.rows,
                "idRange": None if self.first_id is None else [self.first_id, self.last_id],
                "partitionsDropped": self.partitions_dropped, "partitionsCreated": self.partitions_created,
                "prunedThrough": self.pruned_through}

    def text(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        span = "" if self.first_id is None else f" (ids {self.first_id}..{self.last_id})"
        now = "now " if self.dry_run else ""
        lines = [f"{verb} {self.rows} change-log rows{span}; {now}pruned through id {self.pruned_through}"]
        why = ", ".join(self.limited_by) or "nothing"
        if self.consumer and "consumers" in self.limited_by:
            why = why.replace("consumers", f"consumers ({self.consumer})")
        lines.append(f"bound: id {self.bound}, limited by {why}")
        for name, value in self.limits.items():
            lines.append(f"  {name}: {_UNSET[name] if value is None else value}  ({_MEANING[name]})")
        if self.archive_problem:
            lines.append(f"archive: {self.archive_problem}")
        if self.partitions_dropped:
            lines.append(f"partitions {'to drop' if self.dry_run else 'dropped'}: {', '.join(self.partitions_dropped)}")
        if self.partitions_created:
            lines.append(f"partitions created: {', '.join(self.partitions_created)}")
        return "\n".join(lines)


# What each limit of the bound is, and what it means when it has no value (the report's text).
_MEANING = {
    "final": "no change at or below it can still appear",
    "consumers": "every relay consumer has it",
    "retention": "captured at least PAYGATE_HISTORY_RETENTION_S ago",
    "partition": "the end of the last whole partition below the limits",
    "archive": "in a verified archive segment, equal to the database's row",
}
_UNSET = {
    "final": "none: no change yet, or transactions that could still add one did not end",
    "consumers": "not checked", "retention": "not checked", "partition": "not checked",
    "archive": "not checked: nothing to verify",
}


class _ArchiveWalk:
    """The archived changes of the segments from the cursor on, read lazily in manifest
    order, each entry checked against the chain (its number, its ``prev`` — for the first,
    the hash the cursor recorded — and its own hash) and each segment against its entry
    (``ArchiveReader.segment``). The first thing that does not check out ends the walk
    (``problem``): nothing after it is vouched for."""

    def __init__(self, reader: ArchiveReader, index: ArchiveIndex, names: list[str], cursor: Cursor) -> None:
        self._reader = reader
        self._index = index
        self._names = names
        self._number = cursor.next_segment
        self._prev = cursor.prev_hash
        self.start = cursor
        self.found: dict[int, Change] = {}
        self.read: list[tuple[int, int, str, str]] = []  # (segment, largest id, prev, hash)
        self.problem: str | None = None

    async def _entry(self) -> ManifestEntry | None:
        if self._number > len(self._names):
            return None  # the end of the archive
        name = f"{MANIFEST}{self._number:012d}.json"
        if self._names[self._number - 1] != name:
            self.problem = f"{name}: missing from the manifest"
            return None
        try:
            entry = await self._reader.entry(name)
        except Exception as exc:  # unreadable JSON is tampering too
            self.problem = f"{name}: unreadable manifest entry ({exc.__class__.__name__})"
            return None
        if entry.number != self._number or entry.fields.get("prev") != self._prev \
                or entry_hash(entry.fields) != entry.fields.get("hash"):
            self.problem = f"{name}: does not chain to the previous entry (edited)"
            return None
        if self._number == self.start.next_segment and self.start.segment_hash not in (None, entry.fields["hash"]):
            # The segment a previous run took part of: the entry it read is the one to find.
            self.problem = f"{name}: not the entry pruning read (its hash differs from the database's)"
            return None
        return entry

    async def find(self, change_id: int, above: int) -> Change | None:
        """The archived change with this id (reading more segments as needed); only
        changes above ``above`` are kept."""
        while change_id not in self.found and self.problem is None:
            entry = await self._entry()
            if entry is None:
                break
            try:
                changes = await self._reader.segment(entry)
            except ArchiveProblem as exc:
                self.problem = str(exc)
                break
            if await unindexed(self._index, entry.number, [c for c in changes if c.id > above]):
                # Its changes could not be found by intent once gone from the database.
                self.problem = f"{entry.object}: not indexed by intent (run `paygate audit reindex`)"
                break
            digest = str(entry.fields["hash"])
            self.read.append((entry.number, max((c.id for c in changes), default=0), self._prev, digest))
            self._number, self._prev = entry.number + 1, digest
            for change in changes:
                if change.id > above:
                    self.found.setdefault(change.id, change)
        return self.found.get(change_id)

    def forget_through(self, through: int) -> None:
        self.found = {k: v for k, v in self.found.items() if k > through}

    def cursor(self, through: int) -> Cursor:
        """The first segment that may hold a change above ``through``, the hash its entry
        must chain to and, read, its own hash (its changes at or below ``through`` leave
        the database: what holds them from now on must stay as it was read)."""
        for number, largest, prev, digest in self.read:
            if largest > through:
                return Cursor(number, prev, digest)
        if self.read:
            return Cursor(self.read[-1][0] + 1, self.read[-1][3])
        return self.start


class HistoryPruner:
    def __init__(self, db: Database, archive: ObjectStore, settings: Settings, *,
                 batch_rows: int | None = None) -> None:
        self._db = db
        self._store = HistoryPruneStore(db)
        self._reader = ArchiveReader(archive)
        self._settings = settings
        self._batch = batch_rows or settings.history_prune_batch_rows
        self._fault = settings.fault_point

    async def run(self, *, dry_run: bool = False, now: int | None = None) -> PruneReport:
        store = self._store
        # Partitions first: the next ids need them whatever happens to the rest of the run
        # (an archive that cannot be read, say).
        created = [] if dry_run or not store.partitioned else await store.ensure_partitions()
        state = await store.state()
        pruned = state.pruned_through
        report = PruneReport(dry_run, pruned, pruned, pruned_through=pruned, partitions_created=created)
        final = await store.final_id()
        report.limits["final"] = final
        if final is None or final <= pruned:
            return await self._finish(report, ["final"])
        consumers = await store.consumer_bound(pruned, final)
        report.limits["consumers"], report.consumer = consumers.bound, consumers.consumer
        cutoff = (now_us() if now is None else now) - self._settings.history_retention_s * 1_000_000
        report.limits["retention"] = await store.retention_bound(pruned, final, cutoff)
        candidate = min(v for v in report.limits.values() if v is not None)
        target = candidate
        droppable = []
        if store.partitioned:
            partitions, _ = await store.partitions()
            droppable = [p for p in partitions if pruned < p.hi - 1 <= candidate]
            target = droppable[-1].hi - 1 if droppable else pruned
            report.limits["partition"] = target  # whole partitions only
        report.limits["archive"] = None
        if target > pruned:
            verified, walk = await self._verify_and_delete(report, state.cursor, pruned, target, dry_run)
            report.limits["archive"] = verified
            if store.partitioned:
                await self._drop(report, [p for p in droppable if p.hi - 1 <= verified], walk, dry_run)
        report.bound = min(v for v in report.limits.values() if v is not None)
        # What held the bound back: each stage can only lower what the one before allowed
        # (the limits, then whole partitions, then what the archive vouches for); the last
        # stage that lowered it is the answer.
        limited_by = [k for k in ("consumers", "retention") if report.limits[k] == candidate < final] or ["final"]
        if store.partitioned and target < candidate:
            limited_by = ["partition"]
        archive = report.limits["archive"]
        if archive is not None and archive < target:
            limited_by = ["archive"]
        return await self._finish(report, limited_by)

    async def _finish(self, report: PruneReport, limited_by: list[str]) -> PruneReport:
        report.limited_by = limited_by
        if not report.dry_run and report.rows and not self._store.partitioned:
            await self._store.reclaim_space()
        return report

    async def _verify_and_delete(self, report: PruneReport, cursor: Cursor, pruned: int, target: int,
                                 dry_run: bool) -> tuple[int, _ArchiveWalk]:
        """Verify (pruned, target] against the archive batch by batch; on SQLite delete each
        verified batch at once. Returns how far the archive vouches for."""
        walk = _ArchiveWalk(self._reader, ArchiveIndex(self._db), await self._reader.entry_names(), cursor)
        lo = pruned
        while lo < target:
            hi = min(lo + self._batch, target)
            verified = hi
            for row in await self._store.rows(lo, hi):
                archived = await walk.find(row.id, lo)
                if archived is None or not archived.same_content(row):
                    verified = row.id - 1
                    report.archive_problem = walk.problem or report.archive_problem or (
                        f"change {row.id} is not in a verified archive segment" if archived is None
                        else f"change {row.id} differs from the archived copy")
                    break
            if verified > lo and not self._store.partitioned:
                await self._delete(report, lo, verified, walk.cursor(verified), dry_run)
            walk.forget_through(verified)
            if verified < hi:
                return verified, walk
            lo = hi
        return target, walk

    async def _delete(self, report: PruneReport, lo: int, hi: int, cursor: Cursor, dry_run: bool) -> None:
        if dry_run:
            deleted = len(await self._store.rows(lo, hi))
        else:
            deleted = await self._store.delete_range(
                lo, hi, cursor, fault=lambda: crash_point(self._fault, "prune_before_commit"))
            crash_point(self._fault, "prune_after_commit")
            report.pruned_through = hi
        self._count(report, lo, hi, deleted)

    async def _drop(self, report: PruneReport, partitions: list[Partition], walk: _ArchiveWalk,
                    dry_run: bool) -> None:
        lo = report.pruned_before
        for partition in partitions:
            if dry_run:
                deleted = len(await self._store.rows(lo, partition.hi - 1))
            else:
                deleted = await self._store.drop_partition(
                    partition, lo, walk.cursor(partition.hi - 1), fault=lambda: crash_point(self._fault, "prune_before_commit"))
                crash_point(self._fault, "prune_after_commit")
                report.pruned_through = partition.hi - 1
            report.partitions_dropped.append(partition.name)
            self._count(report, lo, partition.hi - 1, deleted)
            lo = partition.hi - 1

    @staticmethod
    def _count(report: PruneReport, lo: int, hi: int, deleted: int) -> None:
        if deleted:
            report.first_id = lo + 1 if report.first_id is None else report.first_id
            report.last_id = hi
        report.rows += deleted


async def run_scheduled(db: Database, archive: ObjectStore, settings: Settings) -> None:
    """The gateway's pruning: every ``PAYGATE_HISTORY_PRUNE_INTERVAL_S``, under a lease so
    one process among all workers and hosts prunes (the others keep trying for it)."""
    pruner = HistoryPruner(db, archive, settings)
    lease = ConsumerLease(db, LEASE_NAME)
    stopped_by: str | None = None  # the archive problem last logged: said once, not every run
    try:
        while True:
            try:
                if await lease.acquire():
                    report = await pruner.run()
                    if report.rows or report.partitions_created:
                        log.info("history pruned: %d rows, through id %d, limited by %s", report.rows,
                                 report.pruned_through, ", ".join(report.limited_by))
                    if report.archive_problem != stopped_by and report.archive_problem is not None:
                        # Pruning holds back until it is mended (a segment unreadable or not indexed).
                        log.warning("history pruning stops at the archive: %s", report.archive_problem)
                    stopped_by = report.archive_problem
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("history pruning failed (%s)", exc.__class__.__name__)
                await lease.release()
            await asyncio.sleep(settings.history_prune_interval_s)
    finally:
        await lease.release()
