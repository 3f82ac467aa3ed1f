"""``paygate audit``: prove that the history is whole over all time, and show one intent's timeline.

``paygate audit verify`` (:func:`verify_archive`) checks, pruned or not: the manifest's hash
chain; each segment's checksum, size and count; each intent's sequences gap-free; each
captured row's newest change (archive ∪ database) equal to the row as it is now; every change
held in both places identical; every segment in the index by intent; change ids gap-free from
1 to the newest across archive ∪ database where the change log's ids are gap-free (SQLite) —
on PostgreSQL a hole is an id a rolled-back transaction took, reported, not a failure.
Duplicates are counted, harmless. It streams (see the function).
"""
from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from paygate_server.cdc.archive import MANIFEST, ArchiveProblem, ArchiveReader
from paygate_server.cdc.index import unindexed
from paygate_server.clock import to_rfc3339
from paygate_server.intents.history import render_history
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.change_log import ChangeLog, EntityRow
from paygate_server.storage.changes import Change
from paygate_server.storage.history_prune import HistoryPruneStore
from paygate_server.storage.history_restores import RestoreRecord, RestoreStore
from paygate_server.storage.relay_offsets import read_offset
from paygate_server.storage.schema import CAPTURED_TABLES

__all__ = ["VerifyReport", "verify_archive", "format_timeline", "IdIntervals", "SequenceTracker", "holes",
           "split_ranges", "EntityTracker"]

PAGE = 5000
MAX_LISTED = 20
MAX_PROBLEMS = 200


class IdIntervals:
    """A set of integers held as sorted, disjoint, non-adjacent closed intervals: the memory
    is one pair per run of consecutive ids, i.e. bounded by the gaps, not by how many ids.
    Ids arrive nearly in order (the relay delivers by id within a window), so an add is
    almost always an extension of the last interval."""

    __slots__ = ("starts", "ends", "peak")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.peak = 0  # the most intervals ever held at once

    def __len__(self) -> int:
        return len(self.starts)

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self.starts, value) - 1
        return i >= 0 and value <= self.ends[i]

    def add(self, value: int) -> bool:
        """Add ``value``; False if it was there already."""
        starts, ends = self.starts, self.ends
        if ends and value == ends[-1] + 1:  # the usual case
            ends[-1] = value
            return True
        i = bisect_right(starts, value) - 1
        if i >= 0 and value <= ends[i]:
            return False
        joins_left = i >= 0 and ends[i] == value - 1
        joins_right = i + 1 < len(starts) and starts[i + 1] == value + 1
        if joins_left and joins_right:
            ends[i] = ends[i + 1]
            del starts[i + 1], ends[i + 1]
        elif joins_left:
            ends[i] = value
        elif joins_right:
            starts[i + 1] = value
        else:
            starts.insert(i + 1, value)
            ends.insert(i + 1, value)
            self.peak = max(self.peak, len(starts))
        return True

    def intervals(self) -> list[tuple[int, int]]:
        return list(zip(self.starts, self.ends, strict=True))


def holes(a: IdIntervals, b: IdIntervals, upto: int) -> list[tuple[int, int]]:
    """The ranges of 1..upto in neither ``a`` nor ``b``."""
    out: list[tuple[int, int]] = []
    covered = 0  # 1..covered are in a or b
    for start, end in sorted(a.intervals() + b.intervals()):
        if covered >= upto:
            break
        if start > covered + 1:
            out.append((covered + 1, min(start - 1, upto)))
        covered = max(covered, end)
    if covered < upto:
        out.append((covered + 1, upto))
    return out


def split_ranges(ranges: list[tuple[int, int]], within: Iterable[tuple[int, int]]
                 ) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``ranges`` (sorted, disjoint) cut into the parts inside some range of ``within`` and the rest."""
    cover = sorted(within)
    inside: list[tuple[int, int]] = []
    outside: list[tuple[int, int]] = []
    for a, b in ranges:
        at = a
        for c, d in cover:
            if d < at or c > b:
                continue
            if c > at:
                outside.append((at, c - 1))
            inside.append((max(at, c), min(b, d)))
            at = min(b, d) + 1
            if at > b:
                break
        if at <= b:
            outside.append((at, b))
    return inside, outside


def _digest(data: Mapping[str, Any], keys: Iterable[str]) -> bytes:
    """A digest of the snapshot's values under ``keys`` (parsed JSON, key order irrelevant)."""
    body = orjson.dumps({k: data.get(k) for k in keys}, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=16).digest()


class EntityTracker:
    """Per entity (a captured row) seen in the archive: its newest change's sequence, its id,
    the keys of its snapshot (one shared set per shape of row) and a 16-byte digest of the
    snapshot — so a row can be compared with its newest archived change after the archive
    pass without holding the change. Memory: one small record per entity."""

    def __init__(self) -> None:
        self.newest: dict[tuple[str, str], tuple[int, int, frozenset[str], bytes]] = {}
        self._shapes: dict[frozenset[str], frozenset[str]] = {}

    def add(self, change: Change) -> None:
        key = (change.entity, change.entity_id)
        held = self.newest.get(key)
        if held is not None and held[0] >= change.intent_seq:
            return
        data = change.snapshot()
        shape = frozenset(data)
        keys = self._shapes.setdefault(shape, shape)
        self.newest[key] = (change.intent_seq, change.id, keys, _digest(data, keys))


def _entity_problem(row: EntityRow, archived: tuple[int, int, frozenset[str], bytes] | None) -> str | None:
    """Why the row is not its newest change (archive ∪ database), or None. Only the keys the
    change's snapshot has are compared: a column added after the change was captured is not
    in it (as in a timeline, where it shows as null)."""
    if row.newest_seq is not None and row.newest_data is not None and (
            archived is None or row.newest_seq >= archived[0]):
        stored = orjson.loads(row.newest_data)
        current = orjson.loads(row.data)
        if set(stored) <= set(current) and all(current[k] == v for k, v in stored.items()):
            return None
        return f"its newest change (id {row.newest_id}, sequence {row.newest_seq}) differs from the row"
    if archived is None:
        return "no change in the archive or the database"
    seq, change_id, keys, digest = archived
    current = orjson.loads(row.data)
    if keys <= set(current) and _digest(current, keys) == digest:
        return None
    return f"its newest change (id {change_id}, sequence {seq}, archive only) differs from the row"


class SequenceTracker:
    """Per intent: the next sequence expected, and the holes left so far. Each source gives
    an intent's changes in sequence order (the archive in delivery order, the database by
    id), so a hole one source leaves can be filled only by the other. Memory: one integer
    per intent seen, plus one pair per open hole."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}
        self.open: dict[str, list[list[int]]] = {}

    def add(self, intent_id: str, seq: int) -> str | None:
        """Record ``seq``; a problem if it repeats one already seen."""
        expected = self.next.get(intent_id, 1)
        if seq == expected:
            self.next[intent_id] = seq + 1
            return None
        if seq > expected:
            self.open.setdefault(intent_id, []).append([expected, seq - 1])
            self.next[intent_id] = seq + 1
            return None
        ranges = self.open.get(intent_id, [])
        for hole in ranges:  # an earlier sequence: it fills a hole, or it repeats one
            if hole[0] <= seq <= hole[1]:
                if hole[0] == hole[1]:
                    ranges.remove(hole)
                elif seq == hole[0]:
                    hole[0] += 1
                elif seq == hole[1]:
                    hole[1] -= 1
                else:
                    ranges.append([seq + 1, hole[1]])
                    hole[1] = seq - 1
                if not ranges:
                    del self.open[intent_id]
                return None
        return f"intent {intent_id}: sequence {seq} appears under two change ids"

    def gaps(self) -> list[str]:
        return [f"intent {intent_id}: sequence{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''}"
                " in neither the archive nor the database"
                for intent_id, ranges in sorted(self.open.items()) for a, b in sorted(ranges)]


@dataclass
class IdSample:
    """How many ids, and the first few of them (a report's memory stays bounded)."""

    count: int = 0
    first: list[int] = field(default_factory=list)

    def add(self, value: int) -> None:
        self.count += 1
        if len(self.first) < MAX_LISTED:
            self.first.append(value)

    def __len__(self) -> int:
        return self.count

    def text(self) -> str:
        return ", ".join(map(str, self.first)) + (" …" if self.count > len(self.first) else "")


@dataclass
class VerifyReport:
    archive: str
    segments: int = 0
    archived: int = 0  # distinct changes in the archive
    duplicates: int = 0  # extra copies (at-least-once delivery; harmless)
    database: int = 0  # changes in the database
    archive_only: int = 0  # pruned from the database, held by the archive (fine)
    pending: int = 0  # committed changes the relay has not reached yet (not a failure)
    newest: int = 0  # the newest change id, in either place
    problems: list[str] = field(default_factory=list)
    missing: IdSample = field(default_factory=IdSample)  # the relay passed it, the archive lacks it
    # Archived, absent from the database, and above anything pruning removed: the database
    # lost it (restored from a backup older than the archive: docs/operations.md).
    not_in_database: IdSample = field(default_factory=IdSample)
    mismatched: IdSample = field(default_factory=IdSample)  # archive and database differ
    # The restores `paygate history resume-after-restore` recorded, and how many of each one's
    # lost changes the archive holds: reported, not a failure (docs/history.md "After a restore").
    restores: list[RestoreRecord] = field(default_factory=list)
    restore_lost: list[int] = field(default_factory=list)
    lost: list[tuple[int, int]] = field(default_factory=list)  # id ranges in neither place
    # PostgreSQL: id ranges in neither place taken by transactions that rolled back (a
    # sequence is not transactional); information, not a failure — the entity and sequence
    # checks are what prove no committed change is missing. Always empty on SQLite.
    never_committed: list[tuple[int, int]] = field(default_factory=list)
    ids_gap_free: bool = True  # the change log's ids have no holes by construction (SQLite)
    entities: int = 0  # captured rows checked against their newest change
    stale: list[str] = field(default_factory=list)  # rows whose newest change is not the row (the first few)
    stale_count: int = 0
    # What verify held, for the operator and the tests: the most id intervals at once
    # (bounded by gaps), the intents tracked (one integer each) and the entities tracked
    # (one small record each: see EntityTracker).
    intervals_peak: int = 0
    intents_tracked: int = 0
    entities_tracked: int = 0

    @property
    def lost_count(self) -> int:
        return sum(b - a + 1 for a, b in self.lost)

    @property
    def never_committed_count(self) -> int:
        return sum(b - a + 1 for a, b in self.never_committed)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.missing or self.not_in_database or self.mismatched or self.lost
                    or self.stale_count)

    def add_stale(self, text: str) -> None:
        self.stale_count += 1
        if len(self.stale) < MAX_LISTED:
            self.stale.append(text)

    @staticmethod
    def _ranges_text(ranges: list[tuple[int, int]]) -> str:
        shown = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:MAX_LISTED]]
        return ", ".join(shown) + (" …" if len(ranges) > MAX_LISTED else "")

    def lost_text(self) -> str:
        return self._ranges_text(self.lost)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "archive": self.archive, "segments": self.segments, "archived": self.archived,
                "duplicates": self.duplicates, "database": self.database, "archiveOnly": self.archive_only,
                "pending": self.pending, "newest": self.newest, "problems": self.problems,
                "missing": self.missing.first, "missingCount": self.missing.count,
                "notInDatabase": self.not_in_database.first, "notInDatabaseCount": self.not_in_database.count,
                "mismatched": self.mismatched.first, "mismatchedCount": self.mismatched.count,
                "lost": [list(r) for r in self.lost[:MAX_LISTED]], "lostCount": self.lost_count,
                "intervalsPeak": self.intervals_peak, "intentsTracked": self.intents_tracked,
                "idsGapFree": self.ids_gap_free,
                "neverCommitted": [list(r) for r in self.never_committed[:MAX_LISTED]],
                "neverCommittedCount": self.never_committed_count,
                "entities": self.entities, "stale": self.stale, "staleCount": self.stale_count,
                "entitiesTracked": self.entities_tracked,
                "lostInRestores": [{**r.to_json(), "inArchive": n} for r, n in zip(self.restores, self.restore_lost,
                                                                                   strict=True)]}

    def text(self) -> str:
        lines = [f"archive {self.archive}: {self.segments} segments, {self.archived} changes"
                 f" ({self.duplicates} duplicate copies)",
                 f"database: {self.database} changes, {self.pending} not yet archived (relay lag),"
                 f" {self.archive_only} archived changes no longer in it (pruned)",
                 f"change ids 1..{self.newest}",
                 f"rows: {self.entities} checked against their newest change"]
        if self.never_committed:
            lines.append(f"{self.never_committed_count} change ids never committed (rolled-back transactions):"
                         f" {self._ranges_text(self.never_committed)}")
        for record, found in zip(self.restores, self.restore_lost, strict=True):
            lines.append(f"lost in the restore recorded at {to_rfc3339(record.recorded_at)}: {found} changes"
                         f" (ids {record.first_id}–{record.last_id}), in the archive only"
                         f"{'' if found == record.changes else f' (the record counted {record.changes})'}")
        lines += [f"PROBLEM {p}" for p in self.problems]
        for label, sample in (("missing from the archive", self.missing),
                              ("archived but missing from the database, though never pruned (a database"
                               " restored from a backup older than the archive? then run `paygate history"
                              " resume-after-restore`)", self.not_in_database),
                              ("differ between the archive and the database", self.mismatched)):
            if sample.count:
                lines.append(f"PROBLEM {sample.count} changes {label}: {sample.text()}")
        if self.lost:
            lines.append(f"PROBLEM {self.lost_count} changes in neither the archive nor the database:"
                         f" {self.lost_text()}")
        if self.stale_count:
            lines.append(f"PROBLEM {self.stale_count} rows whose newest change is not the row as it is now:"
                         f" {'; '.join(self.stale)}{' …' if self.stale_count > len(self.stale) else ''}")
        lines.append("OK: every change ever captured is in the archive or the database, identical where in both"
                     if self.ok else "FAILED")
        return "\n".join(lines)


def _problem(report: VerifyReport, text: str) -> None:
    if len(report.problems) < MAX_PROBLEMS:
        report.problems.append(text)
    elif len(report.problems) == MAX_PROBLEMS:
        report.problems.append("… more problems not listed")


async def _compare(log: ChangeLog, segment: list[Change], report: VerifyReport, prune: HistoryPruneStore,
                   number: int) -> set[int]:
    """Compare one segment's (first-seen) changes with the database's copies in its id range.
    One the database lacks was pruned if its id is at or below what pruning may have removed;
    above it nothing ever leaves the change log, so the database lost it — in a restore
    recorded by ``paygate history resume-after-restore`` when its id is in that restore's range
    and its segment was in the archive then (returned: the ids so lost), else a problem. The
    bound is read after the rows (pruning may run meanwhile, and it only grows), only when one
    is absent."""
    if not segment:
        return set()
    mine = {c.id: c for c in segment}
    found: set[int] = set()
    after, upto = min(mine) - 1, max(mine)
    while page := await log.between(after, upto, PAGE):
        after = page[-1].id
        for stored in page:
            have = mine.get(stored.id)
            if have is None:
                continue
            found.add(stored.id)
            if not have.same_content(stored):
                report.mismatched.add(stored.id)
    absent_ids = sorted(mine.keys() - found)
    pruned_through = (await prune.state()).may_be_pruned_through if absent_ids else 0
    restore_lost: set[int] = set()
    for absent in absent_ids:
        # A recorded loss first: pruning later moves its bound past the lost ids, which never
        # were in this database to prune.
        for i, record in enumerate(report.restores):
            if record.first_id <= absent <= record.last_id and number <= record.archive_segment:
                report.restore_lost[i] += 1
                restore_lost.add(absent)
                break
        else:
            if absent <= pruned_through:
                report.archive_only += 1
            else:
                report.not_in_database.add(absent)
    return restore_lost


async def verify_archive(db: Database, reader: ArchiveReader, *, consumer: str = "archive") -> VerifyReport:
    """Prove that every change ever captured is in the archive or the database, identical where
    it is in both: one streaming pass over the archive (a segment at a time, each compared with
    the database's rows in its id range) and one over the database (a page at a time). Held in
    memory: the manifest's entry names, the ids seen as intervals (:class:`IdIntervals`:
    bounded by the gaps), one integer per intent seen (:class:`SequenceTracker`), one small
    record per entity archived (:class:`EntityTracker`), one segment or page.

    Then a pass over the captured tables (a page at a time): each row's newest change must be
    the row as it is now — the trigger's own snapshot expression, evaluated in the same read as
    the database's newest change of the entity, so writes during verify do not disturb it.
    With the per-intent sequences this catches a change lost anywhere, its tail included,
    without relying on global ids. Those are gap-free only where the change log says so
    (:attr:`ChangeLog.ids_gap_free`); elsewhere a hole outside any unreadable segment is an id
    a rolled-back transaction took (``never_committed``)."""
    report = VerifyReport(reader.store.describe(), restores=await RestoreStore(db).records())
    report.restore_lost = [0] * len(report.restores)
    archived, database_only = IdIntervals(), IdIntervals()
    sequences = SequenceTracker()
    entities = EntityTracker()
    unreadable: list[tuple[int, int]] = []  # the id ranges of segments that could not be read
    log = ChangeLog(db)
    index = ArchiveIndex(db)
    not_indexed: list[int] = []  # segments the index by intent does not cover (the first few)
    not_indexed_count = 0
    archive_pos = None
    # The database's anchors of the chain: the hash of the entry before pruning's cursor and,
    # when pruning took part of the cursor's segment (it stopped inside it), that entry's own.
    # Anyone who rewrites the archive can recompute an unkeyed chain; these hashes they cannot
    # change without the database, and what they cover exists nowhere else.
    prune = HistoryPruneStore(db)
    cursor = (await prune.state()).cursor
    anchors = {number: digest for number, digest in ((cursor.next_segment - 1, cursor.prev_hash),
                                                     (cursor.next_segment, cursor.segment_hash))
               if number > 0 and digest is not None}
    async for entry in reader.walk(report.problems):
        report.segments += 1
        archive_pos = entry.position
        if (recorded := anchors.pop(entry.number, None)) is not None and entry.fields["hash"] != recorded:
            _problem(report, f"{MANIFEST}{entry.number:012d}.json: not the entry pruning recorded (its hash"
                             " differs from the database's): the archive was rewritten")
        try:
            changes = await reader.segment(entry)
        except ArchiveProblem as exc:
            _problem(report, str(exc))
            if isinstance(entry.fields.get("firstId"), int) and isinstance(entry.fields.get("lastId"), int):
                unreadable.append((entry.fields["firstId"], entry.fields["lastId"]))
            continue
        if await unindexed(index, entry.number, changes):
            not_indexed_count += 1
            if len(not_indexed) < MAX_LISTED:
                not_indexed.append(entry.number)
        fresh = []
        for change in changes:
            if not archived.add(change.id):
                report.duplicates += 1
                continue
            fresh.append(change)
        report.archived += len(fresh)
        restore_lost = await _compare(log, fresh, report, prune, entry.number)
        for change in fresh:
            # A row the restore set back is compared with its newest change the database kept.
            if change.id not in restore_lost:
                entities.add(change)
            if (problem := sequences.add(change.intent_id, change.intent_seq)) is not None:
                _problem(report, problem)
    for absent in sorted(anchors):
        _problem(report, f"{MANIFEST}{absent:012d}.json: absent, though pruning recorded it: the archive"
                         " lost what pruning verified")
    if not_indexed:
        more = f" … ({not_indexed_count} in all)" if not_indexed_count > len(not_indexed) else ""
        _problem(report, f"segments not in the index by intent: {', '.join(map(str, not_indexed))}{more}"
                         " (run `paygate audit reindex`)")

    pos = await read_offset(db, consumer)
    if archive_pos is not None and archive_pos.key() > pos.key():
        pos = archive_pos
    after = 0
    while page := await log.after(after, PAGE):
        after = page[-1].id
        for stored in page:
            report.database += 1
            if stored.id in archived:
                continue  # compared with the archive's copy above
            database_only.add(stored.id)
            if pos.covers(stored.id, stored.txid):
                report.missing.add(stored.id)
            else:
                report.pending += 1
            if (problem := sequences.add(stored.intent_id, stored.intent_seq)) is not None:
                _problem(report, problem)
    for gap in sequences.gaps():
        _problem(report, gap)
    report.newest = max(archived.ends[-1] if len(archived) else 0, after)
    gaps = holes(archived, database_only, report.newest)
    report.ids_gap_free = log.ids_gap_free
    if report.ids_gap_free:
        report.lost = gaps
    else:  # an id an unreadable segment held is lost; any other hole was never committed
        report.lost, report.never_committed = split_ranges(gaps, unreadable)
    report.intervals_peak = max(archived.peak, database_only.peak)
    report.intents_tracked = len(sequences.next)
    report.entities_tracked = len(entities.newest)
    await _check_rows(log, entities, report)
    return report


async def _check_rows(log: ChangeLog, entities: EntityTracker, report: VerifyReport) -> None:
    """Every captured row against its newest change, archive ∪ database (see verify_archive)."""
    for table in CAPTURED_TABLES:
        after = ""
        while page := await log.rows(table, after, PAGE):
            after = page[-1].entity_id
            for row in page:
                report.entities += 1
                why = _entity_problem(row, entities.newest.get((row.entity, row.entity_id)))
                if why is not None:
                    report.add_stale(f"{row.entity} {row.entity_id}: {why}")


def _summary(data: dict[str, Any]) -> str:
    """One line of an event's object (its API shape, as ``GET …/history`` shows it)."""
    parts = [f"status={data.get('status')}"]
    if data.get("amount") is not None:
        parts.append(f"amount={data['amount']} {data.get('currency') or ''}".rstrip())
    if data.get("amountRefunded"):
        parts.append(f"refunded={data['amountRefunded']}")
    card = data.get("card")
    if isinstance(card, dict) and card.get("brand"):
        parts.append(f"card={card['brand']}/{card.get('last4')}")
    error = data.get("lastError")
    decline = data.get("declineCode") or (error.get("declineCode") if isinstance(error, dict) else None)
    if decline:
        parts.append(f"decline={decline}")
    if data.get("failureReason"):  # a failed refund's, the processor's words: quoted, on one line
        parts.append(f"failure={orjson.dumps(data['failureReason']).decode()}")
    return " ".join(parts)


def format_timeline(intent_id: str, changes: list[Change]) -> str:
    if not changes:
        return f"{intent_id}: no history"
    lines = [f"{intent_id} (merchant {changes[0].merchant_id}): {len(changes)} changes"]
    for e in render_history(changes):
        lines.append(f"  #{e['sequence']:<3} {e['createdAt']}  {e['type']:<22} {e['objectId']:<36} "
                     f"{_summary(e['data'])}")
    return "\n".join(lines)
