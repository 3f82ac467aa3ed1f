"""The long-term archive: append-only, compressed, checksummed segments and a manifest.

Layout in the object store (a folder by default, or an S3 bucket)::

    segments/000000000001.jsonl.gz   one change per line (gzip), in delivery order
    manifest/000000000001.json       one entry per segment, written after the segment

Between the segment and its entry, the segment is indexed by intent in the database
(:mod:`.index`), so a segment with an entry is indexed.

A manifest entry names its segment and holds the segment's SHA-256, size, change count,
first/last change id, the relay position after it, and ``prev`` — the hash of the previous
entry — and its own ``hash``: a hash chain, so editing, removing or reordering any entry
or segment is detected by ``paygate audit verify``. Objects are never rewritten: entries and
segments are created only where there is none (a relay that lost its lease fails rather than
overwrite the next holder's); a segment whose entry was never written (a crash in between) is
left, and the next one goes under a name of its own, ``segments/<n>.<sha256 prefix>.jsonl.gz``.
"""
from __future__ import annotations

import gzip
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from paygate_server.cdc.index import INDEXED_VERSION, write_index
from paygate_server.cdc.relay import Consumer, ConsumerRefused
from paygate_server.cdc.store import ObjectExists, ObjectMissing, ObjectStore
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.faults import crash_point
from paygate_server.storage import Transaction
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.history_restores import RestoreStore

__all__ = ["ArchiveSink", "ArchiveReader", "ManifestEntry", "ArchiveProblem", "ArchiveAhead", "ahead_of", "GENESIS",
           "entry_hash", "RESUME_COMMAND"]

RESUME_COMMAND = "paygate history resume-after-restore"

GENESIS = "0" * 64
SEGMENTS = "segments/"
MANIFEST = "manifest/"


def entry_hash(fields: dict[str, Any]) -> str:
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class ManifestEntry:
    number: int
    fields: dict[str, Any]

    @property
    def object(self) -> str:
        return str(self.fields["object"])

    @property
    def position(self) -> Position:
        return Position.from_json(self.fields["position"])


# What every manifest entry holds, of which type (firstId/lastId: none in an empty segment's).
_ENTRY_FIELDS: dict[str, type] = {"segment": int, "object": str, "sha256": str, "bytes": int, "changes": int,
                                  "position": dict, "prev": str, "hash": str}


class ArchiveProblem(Exception):
    """Something in the archive does not check out."""


class ArchiveAhead(ArchiveProblem, ConsumerRefused):
    """The archive holds change ids this database has not handed out yet: the database was
    restored from a backup older than the archive. Shipping on would put the database's next
    changes under ids (and sequence numbers) the archive already holds with other content."""


def ahead_of(last: ManifestEntry, id_high_water: int) -> ArchiveAhead | None:
    """The refusal when the archive's newest entry holds an id above the largest this database
    ever handed out (never the case but after a restore: the archive only holds ids the
    database gave it, and ids are never given back)."""
    last_id = last.fields.get("lastId")
    if not isinstance(last_id, int) or isinstance(last_id, bool) or last_id <= id_high_water:
        return None
    return ArchiveAhead(f"the archive holds changes up to id {last_id} but this database's change log has only"
                        f" reached id {id_high_water}: the database was restored from a backup older than the"
                        f" archive; run `{RESUME_COMMAND}` (docs/operations.md, \"Backups and restore\")")


def _segments_named(first: int, last: int) -> str:
    shown = ", ".join(f"{SEGMENTS}{n:012d}.jsonl.gz" for n in range(first, min(last, first + 4) + 1))
    return ("segment " if first == last else "segments ") + shown + (" …" if last > first + 4 else "")


def encode_segment(changes: list[Change]) -> bytes:
    lines = b"".join(orjson.dumps(c.record()) + b"\n" for c in changes)
    return gzip.compress(lines, compresslevel=6, mtime=0)


def decode_segment(data: bytes) -> list[Change]:
    return [Change.from_record(orjson.loads(line)) for line in gzip.decompress(data).splitlines() if line]


class ArchiveSink(Consumer):
    """The relay consumer that writes segments (see :mod:`paygate_server.cdc.relay`)."""

    name = "archive"
    transactional = False

    def __init__(self, store: ObjectStore, index: ArchiveIndex, *, batch_size: int, linger_s: float,
                 fault_point: str | None = None) -> None:
        self.store = store
        self.index = index
        self.batch_size = batch_size
        self.linger_s = linger_s
        self._fault = fault_point
        self._next = 1
        self._prev = GENESIS

    async def start(self) -> Position | None:
        reader = ArchiveReader(self.store)
        names = await reader.entry_names()
        if not names:
            self._next, self._prev = 1, GENESIS
            return None
        last = await reader.entry(names[-1])
        restores = RestoreStore(self.index.database)
        if (ahead := ahead_of(last, await restores.id_high_water())) is not None:
            raise ahead
        self._next = last.number + 1
        self._prev = str(last.fields["hash"])
        if last.number <= await restores.resumed_through_segment():
            # Written by the database before its restore: its position is not this one's
            # (the resume command placed the offset after what this database holds).
            return None
        return last.position

    async def deliver(self, changes: list[Change], conn: Transaction | None) -> None:
        data = encode_segment(changes)
        digest = hashlib.sha256(data).hexdigest()
        number = self._next
        entry_name = f"{MANIFEST}{number:012d}.json"
        # Nothing with an entry is ever overwritten: the lease fences the offset, not the
        # archive, and a relay that lost its lease (connection dropped mid-write, a long
        # pause) may write after the next holder started from the same manifest.
        obj = f"{SEGMENTS}{number:012d}.jsonl.gz"
        try:
            await self.store.put_new(obj, data)
        except ObjectExists:
            # Left by a crash before its entry, or another relay's: this one's goes under a
            # name of its own (from its content: the same name holds the same bytes).
            if await self._has_entry(entry_name):
                raise self._stale(number) from None
            obj = f"{SEGMENTS}{number:012d}.{digest[:16]}.jsonl.gz"
            await self.store.put(obj, data)
        crash_point(self._fault, "archive_after_segment")
        # The index before the entry: an entry in the manifest implies its index is complete.
        await write_index(self.index, number, changes)
        fields: dict[str, Any] = {
            "version": INDEXED_VERSION, "segment": number, "object": obj,
            "sha256": digest, "bytes": len(data), "changes": len(changes),
            "firstId": changes[0].id, "lastId": changes[-1].id,
            "position": changes[-1].position.to_json(), "createdAt": to_rfc3339(now_us()),
            "prev": self._prev,
        }
        fields["hash"] = entry_hash(fields)
        try:
            await self.store.put_new(entry_name, orjson.dumps(fields))
        except ObjectExists:
            raise self._stale(number) from None
        self._next, self._prev = number + 1, fields["hash"]

    async def _has_entry(self, name: str) -> bool:
        try:
            await self.store.get(name)
        except ObjectMissing:
            return False
        return True

    @staticmethod
    def _stale(number: int) -> ArchiveProblem:
        return ArchiveProblem(f"segment {number} already has its manifest entry: another relay archived it"
                              " (this one will start again from the manifest)")


class ArchiveReader:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def entry_names(self) -> list[str]:
        return [n for n in await self.store.list(MANIFEST) if n.endswith(".json")]

    async def entry(self, name: str) -> ManifestEntry:
        """The entry ``name``; ValueError if it is not an entry's shape (every field the
        readers use, of its type: an edited entry is a problem to report, not a crash)."""
        fields = orjson.loads(await self.store.get(name))
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        for key, kind in _ENTRY_FIELDS.items():
            if not isinstance(fields.get(key), kind) or isinstance(fields.get(key), bool):
                raise ValueError(f"field {key!r} missing or not {kind.__name__}")
        position = fields["position"]
        if not all(isinstance(position.get(k), int) for k in ("horizon", "lastId")) \
                or not isinstance(position.get("windowEnd"), (int, type(None))):
            raise ValueError("field 'position' malformed")
        return ManifestEntry(fields["segment"], fields)

    async def entries(self) -> tuple[list[ManifestEntry], list[str]]:
        """Every manifest entry in order, and the problems of the chain (if any)."""
        problems: list[str] = []
        entries = [entry async for entry in self.walk(problems)]
        return entries, problems

    async def walk(self, problems: list[str]) -> AsyncIterator[ManifestEntry]:
        """The manifest entries in order, one at a time (only the entries' names are held),
        checking the hash chain on the way; what does not check out is added to ``problems``
        (a missing entry names the segment numbers it leaves out)."""
        prev = GENESIS
        expected = 1
        for name in await self.entry_names():
            try:
                entry = await self.entry(name)
            except Exception as exc:  # unreadable JSON is tampering too
                problems.append(f"{name}: unreadable manifest entry ({exc.__class__.__name__})")
                expected += 1
                continue
            if entry.number > expected and name == f"{MANIFEST}{entry.number:012d}.json":
                problems.append(f"{_segments_named(expected, entry.number - 1)}: manifest entry absent"
                                f" (expected segment {expected}, found {entry.number})")
            elif entry.number != expected or name != f"{MANIFEST}{entry.number:012d}.json":
                problems.append(f"{name}: segment number {entry.number}, expected {expected}")
            if entry.fields.get("prev") != prev:
                problems.append(f"{name}: does not chain to the previous entry")
            if entry_hash(entry.fields) != entry.fields.get("hash"):
                problems.append(f"{name}: entry hash mismatch (edited)")
            prev = str(entry.fields.get("hash"))
            expected = max(expected, entry.number) + 1
            yield entry

    async def entry_for(self, number: int) -> ManifestEntry:
        """Segment ``number``'s entry, its own hash checked (not the whole chain: that is
        ``paygate audit verify``'s walk); ArchiveProblem if it is absent or edited."""
        name = f"{MANIFEST}{number:012d}.json"
        try:
            entry = await self.entry(name)
        except KeyError:
            raise ArchiveProblem(f"{name}: missing") from None
        except Exception as exc:
            raise ArchiveProblem(f"{name}: unreadable manifest entry ({exc.__class__.__name__})") from None
        if entry.number != number or entry_hash(entry.fields) != entry.fields.get("hash"):
            raise ArchiveProblem(f"{name}: entry hash mismatch (edited)")
        return entry

    async def segment(self, entry: ManifestEntry) -> list[Change]:
        """The changes of one segment; ArchiveProblem if it is missing or corrupt."""
        try:
            data = await self.store.get(entry.object)
        except KeyError:
            raise ArchiveProblem(f"{entry.object}: missing") from None
        except ValueError as exc:  # a name no segment has (a folder's "../…")
            raise ArchiveProblem(f"{entry.object}: {exc}") from None
        if hashlib.sha256(data).hexdigest() != entry.fields["sha256"] or len(data) != entry.fields["bytes"]:
            raise ArchiveProblem(f"{entry.object}: checksum mismatch (corrupted or tampered)")
        try:
            changes = decode_segment(data)
        except Exception as exc:
            raise ArchiveProblem(f"{entry.object}: unreadable ({exc.__class__.__name__})") from None
        if len(changes) != entry.fields["changes"]:
            raise ArchiveProblem(f"{entry.object}: {len(changes)} changes, manifest says {entry.fields['changes']}")
        return changes

    async def changes(self) -> AsyncIterator[Change]:
        """Every archived change in archive order (duplicates included); raises on problems."""
        entries, problems = await self.entries()
        if problems:
            raise ArchiveProblem("; ".join(problems))
        for entry in entries:
            for change in await self.segment(entry):
                yield change
