"""An intent's whole timeline: the older part from the archive, the recent part from the database.

Once pruning has deleted an intent's older change-log rows (SPEC §8 "The history leaves the
database"), the database holds only a suffix of its history. :func:`whole_timeline` puts it
back together:

1. the database's rows of the intent (one indexed query, as before pruning existed);
2. if they run 1, 2, … n — the intent's whole history is still there, the common case —
   that is the answer: the archive is not read at all;
3. else the archive's index by intent (:mod:`.index`: one indexed query) names the
   segments holding the intent, and only those whose sequence range reaches below the database's first row
   (below its last, when the database starts at 1 but a restore lost a stretch inside) are
   read — each through its manifest entry (the entry's own hash checked) and its checksum;
4. both are merged, de-duplicated by change id (the database's copy wins; whether the two
   agree is ``paygate audit verify``'s job), ordered by sequence, and must run 1, 2, … n
   without a hole or a repeat: anything else raises :class:`HistoryGap` naming what is
   missing — a shortened history is never returned as if it were whole.
"""
from __future__ import annotations

from paygate_server.cdc.archive import ArchiveProblem, ArchiveReader
from paygate_server.cdc.index import segments_of
from paygate_server.cdc.store import ObjectStore
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change

__all__ = ["HistoryGap", "whole_timeline", "archived_timeline", "check_gap_free"]


class HistoryGap(ArchiveProblem):
    """An intent's history has a hole (or a repeated sequence) in both the database and the archive."""


def _ranges(numbers: list[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def check_gap_free(intent_id: str, changes: list[Change]) -> None:
    """``changes`` (in sequence order) must be sequences 1..n exactly; else HistoryGap."""
    seqs = [c.intent_seq for c in changes]
    if seqs == list(range(1, len(seqs) + 1)):
        return
    present = set(seqs)
    missing = [s for s in range(1, max(seqs) + 1) if s not in present]
    repeated = sorted({s for s in seqs if seqs.count(s) > 1})
    parts = []
    if missing:
        many = len(missing) > 1
        parts.append(f"sequence{'s' if many else ''} {_ranges(missing)} {'are' if many else 'is'}"
                     " in neither the database nor the archive")
    if repeated:
        parts.append(f"sequences {_ranges(repeated)} appear under more than one change id")
    raise HistoryGap(f"history of {intent_id} is incomplete: {'; '.join(parts)}")


async def _from_archive(db: Database, reader: ArchiveReader, intent_id: str, *, below: int | None,
                        merchant_id: str | None) -> list[Change]:
    """The intent's archived changes with a sequence below ``below`` (all when None)."""
    found: list[Change] = []
    for ref in await segments_of(ArchiveIndex(db), intent_id):
        if below is not None and ref.first_seq >= below:
            continue  # the database holds all of this segment's part
        entry = await reader.entry_for(ref.segment)
        for change in await reader.segment(entry):
            if change.intent_id != intent_id or (below is not None and change.intent_seq >= below):
                continue
            if merchant_id is not None and change.merchant_id != merchant_id:
                continue
            found.append(change)
    return found


def _merge(intent_id: str, *parts: list[Change]) -> list[Change]:
    by_id: dict[int, Change] = {}
    for part in parts:  # later parts win: the database's copy, passed last
        for change in part:
            by_id[change.id] = change
    merged = sorted(by_id.values(), key=lambda c: (c.intent_seq, c.id))
    if merged:
        check_gap_free(intent_id, merged)
    return merged


async def whole_timeline(db: Database, intent_id: str, store: ObjectStore | None, *,
                         merchant_id: str | None = None) -> list[Change]:
    """The intent's changes, sequence 1 first, from the database and (when the database no
    longer holds the beginning) the archive; only ``merchant_id``'s, when given. An empty
    list: no such intent (for that merchant). HistoryGap when the two together have a hole;
    ArchiveProblem when a segment it needs is missing or fails its checksum."""
    recent = await ChangeLog(db).of_intent(intent_id, merchant_id=merchant_id)
    whole = bool(recent) and recent[0].intent_seq == 1
    if whole and recent[-1].intent_seq == len(recent):
        return _merge(intent_id, recent)  # all in the database: the archive is not read
    if store is None:
        return _merge(intent_id, recent)  # no archive to complete it from: a gap, if any, is an error
    # The database lacks its beginning (pruned) or, from sequence 1, a stretch inside: changes
    # a restore from an older backup lost, which the archive alone holds (docs/history.md,
    # "After a restore").
    below = recent[-1].intent_seq if whole else recent[0].intent_seq if recent else None
    older = await _from_archive(db, ArchiveReader(store), intent_id, below=below, merchant_id=merchant_id)
    merged = _merge(intent_id, older, recent)
    if not recent and merged:
        # Wholly pruned: pruning recorded the last sequence it took, so the archive must reach
        # it — a history short at its end would otherwise look whole.
        pruned = await ChangeLog(db).pruned_seq(intent_id)
        if merged[-1].intent_seq < pruned:
            raise HistoryGap(f"history of {intent_id} is incomplete: the archive ends at sequence "
                             f"{merged[-1].intent_seq}, the database pruned through {pruned}")
    return merged


async def archived_timeline(db: Database, store: ObjectStore, intent_id: str) -> list[Change]:
    """The intent's changes as the archive holds them, found through the index (``paygate
    audit show --archive``): none of the database's rows are read."""
    return _merge(intent_id, await _from_archive(db, ArchiveReader(store), intent_id, below=None,
                                                 merchant_id=None))
