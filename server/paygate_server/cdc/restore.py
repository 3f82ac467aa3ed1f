"""After a restore: one history again (``paygate history resume-after-restore``).

A database restored from a backup older than the archive lacks the changes the archive
received after the backup, and would hand out their ids and sequence numbers again. The
archive keeps the record of what the restore lost (it is never rewritten); the database's
history goes on *after* it:

* :func:`archive_ahead` — is the archive ahead of the database? (``paygate serve`` refuses to
  start, and the archive consumer to ship, until the command has run: see
  :func:`paygate_server.cdc.archive.ahead_of`);
* :func:`resume_after_restore` — reads the archive's entries the database had not delivered
  (newest first, back to the archive consumer's restored offset or the last restore
  recorded), indexes them by intent, finds the changes the database lacks (above what pruning
  may have removed), then in one transaction (``storage/history_restores.py``) moves change
  ids past the archive's, each touched intent's numbering past its archived sequences, the
  archive consumer after what the database holds, and records the lost range, which
  ``paygate audit verify`` then reports as such rather than as a problem.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from paygate_server.cdc.archive import (
    ArchiveAhead,
    ArchiveProblem,
    ArchiveReader,
    ManifestEntry,
    ahead_of,
)
from paygate_server.cdc.index import unindexed, write_index
from paygate_server.cdc.s3 import S3Error
from paygate_server.cdc.store import ObjectStore, store_for
from paygate_server.clock import now_us, to_rfc3339
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change
from paygate_server.storage.history_prune import HistoryPruneStore
from paygate_server.storage.history_restores import RestoreRecord, RestoreStore
from paygate_server.storage.relay_offsets import read_offset

__all__ = ["archive_ahead", "refuse_if_archive_ahead", "resume_after_restore", "ResumeReport", "NothingToResume",
           "ResumeRefused", "ARCHIVE_CONSUMER"]

ARCHIVE_CONSUMER = "archive"
_PAGE = 5000
_LISTED = 10


class NothingToResume(Exception):
    """The archive holds nothing the database lacks: no restore to resume after (or done)."""


class ResumeRefused(Exception):
    """The database and the archive disagree in a way the command cannot settle."""


async def archive_ahead(db: Database, store: ObjectStore) -> ArchiveAhead | None:
    """The refusal to run on, when the archive's newest entry holds an id this database has not
    handed out (one manifest listing and one entry read: what the archive consumer's start
    reads anyway)."""
    reader = ArchiveReader(store)
    names = await reader.entry_names()
    if not names:
        return None
    return ahead_of(await _entry(reader, names[-1]), await RestoreStore(db).id_high_water())


async def refuse_if_archive_ahead(settings: Settings, db: Database) -> None:
    """``paygate serve``'s start-up check: ArchiveAhead (one line, naming the command) when the
    configured archive is ahead of the database. Refused whether or not this process runs the
    relay: its payments would take the change ids the archive already holds."""
    store = store_for(settings)
    try:
        ahead = await archive_ahead(db, store)
    except (S3Error, httpx.HTTPError, ArchiveProblem, OSError):
        # An archive that cannot be read now does not keep the gateway from starting (it did
        # not before): the archive consumer reads it again at its start and refuses then.
        return
    finally:
        await store.close()
    if ahead is not None:
        raise ahead


async def _entry(reader: ArchiveReader, name: str) -> ManifestEntry:
    try:
        return await reader.entry(name)
    except Exception as exc:
        raise ArchiveProblem(f"{name}: unreadable manifest entry ({exc.__class__.__name__})") from None


@dataclass
class ResumeReport:
    record: RestoreRecord
    segments_read: int
    segments_indexed: int
    heads: dict[str, int] = field(default_factory=dict)  # intent → the sequence it now numbers after

    def to_json(self) -> dict[str, Any]:
        return {"lost": self.record.to_json(), "segmentsRead": self.segments_read,
                "segmentsIndexed": self.segments_indexed, "intentsRenumbered": len(self.heads),
                "resumedAfterId": self.record.resumed_after_id}

    def text(self) -> str:
        r = self.record
        lost = (f"{r.changes} changes (ids {r.first_id}–{r.last_id}) of {r.intents} intents, in the archive only"
                if r.changes else "no change")
        return "\n".join([
            f"read {self.segments_read} archive segments newer than the database's archive offset"
            f" ({self.segments_indexed} indexed by intent)",
            f"lost in the restore: {lost}",
            f"change ids go on after {r.resumed_after_id}; {len(self.heads)} intents number their next change"
            " after their archived sequences; the archive consumer starts after what the database holds",
            f"recorded at {to_rfc3339(r.recorded_at)}: `paygate audit verify` reports it, the relay ships again"])


async def _database_copies(log: ChangeLog, changes: list[Change]) -> dict[int, Change]:
    """The database's rows with the ids of ``changes`` (read by id range, a page at a time)."""
    wanted = {c.id for c in changes}
    found: dict[int, Change] = {}
    after, upto = min(wanted) - 1, max(wanted)
    while page := await log.between(after, upto, _PAGE):
        after = page[-1].id
        found.update((c.id, c) for c in page if c.id in wanted)
    return found


async def resume_after_restore(db: Database, store: ObjectStore) -> ResumeReport:
    """See the module. NothingToResume when the archive holds nothing the database lacks;
    ResumeRefused when the database already wrote other changes under the archive's ids."""
    reader = ArchiveReader(store)
    restores = RestoreStore(db)
    index = ArchiveIndex(db)
    log = ChangeLog(db)
    names = await reader.entry_names()
    if not names:
        raise NothingToResume("the archive is empty: there is nothing to resume after")
    resumed_through = await restores.resumed_through_segment()
    high = await restores.id_high_water()
    offset = await read_offset(db, ARCHIVE_CONSUMER)
    pruned_through = (await HistoryPruneStore(db).state()).may_be_pruned_through
    # Newest first, back to the first entry the database had recorded delivering (it and
    # those before it hold only changes the backup has, or pruning took) or to the last
    # restore recorded. Positions only grow along the manifest. An offset that covers an entry
    # naming an id this database never handed out was not written by it (the relay before
    # this command existed took the archive's own position on its first start after the
    # restore): it says nothing about what the backup holds, and is ignored.
    newer: list[ManifestEntry] = []
    trusted = True
    for name in reversed(names):
        entry = await _entry(reader, name)
        if entry.number <= resumed_through:
            break
        if trusted and entry.position.key() <= offset.key():
            if ahead_of(entry, high) is None:
                break
            trusted = False
        newer.append(entry)
    newer.reverse()
    newest_segment = newer[-1].number if newer else 0
    lost: dict[int, Change] = {}
    clashes: list[int] = []
    archive_max = 0
    indexed = 0
    for entry in newer:
        changes = await reader.segment(entry)
        if not changes:
            continue
        if await unindexed(index, entry.number, changes):  # the backup's index predates it
            await write_index(index, entry.number, changes)
            indexed += 1
        archive_max = max(archive_max, max(c.id for c in changes))
        held = await _database_copies(log, changes)
        for change in changes:
            stored = held.get(change.id)
            if stored is None:
                if change.id > pruned_through:
                    lost[change.id] = change
            elif not stored.same_content(change):
                clashes.append(change.id)
    if clashes:
        shown = ", ".join(map(str, sorted(set(clashes))[:_LISTED])) + (" …" if len(set(clashes)) > _LISTED else "")
        raise ResumeRefused(f"the database already holds {len(set(clashes))} changes under ids the archive holds with"
                            f" other content ({shown}): it ran after the restore before this command;"
                            " see docs/operations.md, \"Backups and restore\"")
    if not lost and archive_max <= high:
        records = await restores.records()
        done = f" (the restore recorded at {to_rfc3339(records[-1].recorded_at)} is handled)" if records else ""
        raise NothingToResume(f"the archive holds no change this database lacks{done}: nothing to resume after")
    heads: dict[str, int] = {}
    for change in lost.values():
        heads[change.intent_id] = max(heads.get(change.intent_id, 0), change.intent_seq)
    record = RestoreRecord(recorded_at=now_us(), first_id=min(lost, default=0), last_id=max(lost, default=0),
                           changes=len(lost), intents=len(heads), archive_segment=newest_segment,
                           resumed_after_id=max(archive_max, high))
    resumed_after = await restores.resume(record, heads, consumer=ARCHIVE_CONSUMER)
    prune = HistoryPruneStore(db)
    if prune.partitioned:  # the ids jumped: partitions for them, not the DEFAULT one
        await prune.ensure_partitions()
    return ResumeReport(RestoreRecord(record.recorded_at, record.first_id, record.last_id, record.changes,
                                      record.intents, record.archive_segment, resumed_after),
                        segments_read=len(newer), segments_indexed=indexed, heads=heads)
