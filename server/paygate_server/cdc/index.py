"""The archive's index by intent: which segments hold an intent's changes.

Once pruning has deleted an intent's older change-log rows, its timeline must be found in the
archive without reading every segment. The index says, per (intent, segment), which of the
intent's sequences the segment holds; it lives in the database
(:class:`~paygate_server.storage.archive_index.ArchiveIndex`), written by
:class:`~.archive.ArchiveSink` with one statement per segment, after the segment and *before*
the segment's manifest entry — so a segment with an entry is indexed.

Why in the database and not in the archive: an append-only store (S3 has no atomic append)
can hold an index by intent only as one object per (intent, segment) — the first design,
archive manifest entries of ``version`` 2 — and that is one PUT (a file, two fsyncs and a
rename on a folder) per distinct intent per segment, about one per payment at the target
rate, paid by the gateway's CPU (docs/performance.md). One multi-row statement per segment
costs a few microseconds per intent. Entries written since are ``version`` 3.

Whether a segment's changes are all indexed is checked, not trusted, where it matters:
pruning does not let a change leave the database unless its segment is indexed for it, and
``paygate audit verify`` fails on an archived change the index does not cover. Segments
archived before this (entries of ``version`` 1 and 2, whose ``index/`` objects are no longer
read), or a database restored without its index: ``paygate audit reindex`` (:func:`reindex`)
indexes every segment whose changes are not all covered; a second run finds nothing to do.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from paygate_server.storage.archive_index import ArchiveIndex, SeqRange
from paygate_server.storage.changes import Change

if TYPE_CHECKING:
    from paygate_server.cdc.archive import ArchiveReader

__all__ = ["INDEXED_VERSION", "IndexRef", "ranges_of", "write_index", "segments_of", "unindexed",
           "reindex", "ReindexReport"]

# Manifest entries from this version on are written after their segment's index (in the database).
INDEXED_VERSION = 3


@dataclass(frozen=True, order=True)
class IndexRef:
    """Segment ``segment`` holds the intent's changes ``first_seq..last_seq`` (or fewer)."""

    segment: int
    first_seq: int
    last_seq: int


def ranges_of(changes: Iterable[Change]) -> dict[str, SeqRange]:
    """Each intent in ``changes`` with its smallest and largest sequence there."""
    ranges: dict[str, SeqRange] = {}
    for change in changes:
        seq = change.intent_seq
        have = ranges.get(change.intent_id)
        ranges[change.intent_id] = (seq, seq) if have is None else (min(have[0], seq), max(have[1], seq))
    return ranges


async def write_index(index: ArchiveIndex, segment: int, changes: Iterable[Change]) -> int:
    """Index one segment; returns how many intents it holds."""
    ranges = ranges_of(changes)
    await index.record(segment, ranges)
    return len(ranges)


async def segments_of(index: ArchiveIndex, intent_id: str) -> list[IndexRef]:
    """The segments holding ``intent_id``'s changes, by segment number."""
    return [IndexRef(*row) for row in await index.of_intent(intent_id)]


async def unindexed(index: ArchiveIndex, segment: int, changes: list[Change]) -> list[Change]:
    """The changes of ``segment`` its index rows do not cover (none: it is indexed for them)."""
    if not changes:
        return []
    located = await index.of_segment(segment)
    out = []
    for change in changes:
        span = located.get(change.intent_id)
        if span is None or not span[0] <= change.intent_seq <= span[1]:
            out.append(change)
    return out


@dataclass
class ReindexReport:
    segments: int = 0  # manifest entries seen
    indexed: int = 0  # segments indexed by this run
    intents: int = 0  # index rows written by this run (one per intent per segment)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"ok": not self.problems, "segments": self.segments, "indexed": self.indexed,
                "intents": self.intents, "problems": self.problems}


async def reindex(reader: ArchiveReader, index: ArchiveIndex) -> ReindexReport:
    """Index every segment whose changes the index does not all cover (idempotent: reads the
    whole archive, writes only what is missing). Only segments whose entry chains and whose
    checksum matches are indexed."""
    from paygate_server.cdc.archive import ArchiveProblem

    report = ReindexReport()
    async for entry in reader.walk(report.problems):
        report.segments += 1
        try:
            changes = await reader.segment(entry)
        except ArchiveProblem as exc:
            report.problems.append(str(exc))
            continue
        if await unindexed(index, entry.number, changes):
            report.intents += await write_index(index, entry.number, changes)
            report.indexed += 1
    return report
