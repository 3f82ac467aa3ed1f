"""The archive's index by intent: which segments hold an intent's changes, found with one LIST.

Layout, next to ``segments/`` and ``manifest/``::

    index/<intent id>/<segment:012d>.<first seq>-<last seq>.json   {"segment", "intentId", "ids"}

one small object per (intent, segment), written by :class:`~.archive.ArchiveSink` after the
segment and *before* the segment's manifest entry — so an entry in the manifest (``version``
2 and later) means its segment's index is complete — and never updated afterwards.

Why this layout: listing ``index/<intent id>/`` names every segment holding the intent, and
the sequence range in each name lets a timeline skip the segments whose changes the database
still holds, without a GET per index object; then only the segments it needs are read. The
store is append-only (S3 has no atomic append), so an index that is one object per intent
would have to be rewritten with every segment; one object per (intent, segment) never is.
Cost: one PUT per distinct intent per segment, issued concurrently (bounded).

A crash after some index objects but before the entry leaves objects naming a segment
number the next delivery reuses (as it reuses the segment's name, see :mod:`.archive`):
readers treat a name as a hint, read the segment itself and keep only the intent's changes,
so a stale name costs a read, never a wrong timeline.

Archives written before the index existed (``version`` 1 entries): ``paygate audit reindex``
(:func:`reindex`) builds their index, then records ``reindexed/<segment:012d>`` per segment,
so a second run skips them and ``paygate audit verify`` can tell which segments are indexed.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

from paygate_server.storage.changes import Change

if TYPE_CHECKING:
    from paygate_server.cdc.archive import ArchiveReader, ManifestEntry
    from paygate_server.cdc.store import ObjectStore

__all__ = ["INDEX", "REINDEXED", "IndexRef", "index_objects", "write_index", "segments_of", "reindex",
           "ReindexReport", "INDEXED_VERSION", "is_indexed"]

INDEX = "index/"
REINDEXED = "reindexed/"
# Manifest entries from this version on are written after their segment's index.
INDEXED_VERSION = 2
# Index writes in flight at once (each is a file + fsync, or an S3 PUT).
CONCURRENCY = 16

# Intent ids become a folder name: nothing that could climb out of index/ or nest.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_NAME = re.compile(r"^(\d{12})\.(\d+)-(\d+)\.json$")


class UnsafeIntentId(ValueError):
    """An intent id that cannot name an index folder."""


def _prefix(intent_id: str) -> str:
    if not _SAFE_ID.match(intent_id):
        raise UnsafeIntentId("intent id unusable as an index folder")
    return f"{INDEX}{intent_id}/"


@dataclass(frozen=True, order=True)
class IndexRef:
    """One index name: segment ``segment`` holds the intent's changes ``first_seq..last_seq``."""

    segment: int
    first_seq: int
    last_seq: int


def index_objects(segment: int, changes: Iterable[Change]) -> dict[str, bytes]:
    """The index objects of one segment: name -> body, one per intent in it."""
    per_intent: dict[str, list[Change]] = {}
    for change in changes:
        per_intent.setdefault(change.intent_id, []).append(change)
    objects: dict[str, bytes] = {}
    for intent_id, mine in per_intent.items():
        seqs = [c.intent_seq for c in mine]
        name = f"{_prefix(intent_id)}{segment:012d}.{min(seqs)}-{max(seqs)}.json"
        objects[name] = orjson.dumps({"segment": segment, "intentId": intent_id, "ids": [c.id for c in mine]})
    return objects


async def _put_all(store: ObjectStore, objects: dict[str, bytes]) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def put(name: str, body: bytes) -> None:
        async with gate:
            await store.put(name, body)

    await asyncio.gather(*(put(name, body) for name, body in objects.items()))


async def write_index(store: ObjectStore, segment: int, changes: Iterable[Change]) -> int:
    """Write one segment's index; returns how many objects (one per intent)."""
    objects = index_objects(segment, changes)
    await _put_all(store, objects)
    return len(objects)


async def segments_of(store: ObjectStore, intent_id: str) -> list[IndexRef]:
    """The segments holding ``intent_id``'s changes (one LIST), by segment number; several names
    for one segment (a stale name after a crash) merge into one range covering both."""
    prefix = _prefix(intent_id)
    merged: dict[int, IndexRef] = {}
    for name in await store.list(prefix):
        match = _NAME.match(name[len(prefix):])
        if match is None:
            continue
        ref = IndexRef(int(match[1]), int(match[2]), int(match[3]))
        have = merged.get(ref.segment)
        if have is not None:
            ref = IndexRef(ref.segment, min(have.first_seq, ref.first_seq), max(have.last_seq, ref.last_seq))
        merged[ref.segment] = ref
    return sorted(merged.values())


def is_indexed(entry: ManifestEntry, reindexed: set[int]) -> bool:
    return int(entry.fields.get("version", 1)) >= INDEXED_VERSION or entry.number in reindexed


async def reindexed_segments(store: ObjectStore) -> set[int]:
    """Segments whose index ``paygate audit reindex`` built (old archives only: bounded by them)."""
    return {int(name[len(REINDEXED):]) for name in await store.list(REINDEXED) if name[len(REINDEXED):].isdigit()}


@dataclass
class ReindexReport:
    segments: int = 0  # manifest entries seen
    indexed: int = 0  # segments indexed by this run
    objects: int = 0  # index objects written by this run
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"ok": not self.problems, "segments": self.segments, "indexed": self.indexed,
                "objects": self.objects, "problems": self.problems}


async def reindex(reader: ArchiveReader) -> ReindexReport:
    """Build the index of every segment written before it existed (idempotent: a segment done
    before is skipped; one interrupted half-way is written again, byte for byte the same).
    Only segments whose entry chains and whose checksum matches are indexed."""
    from paygate_server.cdc.archive import ArchiveProblem

    report = ReindexReport()
    done = await reindexed_segments(reader.store)
    async for entry in reader.walk(report.problems):
        report.segments += 1
        if is_indexed(entry, done):
            continue
        try:
            changes = await reader.segment(entry)
        except ArchiveProblem as exc:
            report.problems.append(str(exc))
            continue
        report.objects += await write_index(reader.store, entry.number, changes)
        # Not empty: an S3 PUT without a body is refused by some stores (no Content-Length).
        await reader.store.put(f"{REINDEXED}{entry.number:012d}", orjson.dumps({"segment": entry.number}))
        report.indexed += 1
    return report
