"""``paygate audit``: prove the archive holds the history, and show one intent's timeline."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paygate_server.cdc.archive import ArchiveProblem, ArchiveReader
from paygate_server.intents.history import render_history
from paygate_server.storage import Database
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change
from paygate_server.storage.relay_offsets import read_offset

__all__ = ["VerifyReport", "verify_archive", "timeline", "format_timeline"]

PAGE = 5000
MAX_LISTED = 20


@dataclass
class VerifyReport:
    archive: str
    segments: int = 0
    archived: int = 0  # distinct changes in the archive
    duplicates: int = 0  # extra copies (at-least-once delivery; harmless)
    database: int = 0  # changes in the database
    pending: int = 0  # committed changes the relay has not reached yet (not a failure)
    problems: list[str] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.problems or self.missing or self.extra or self.mismatched)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "archive": self.archive, "segments": self.segments, "archived": self.archived,
                "duplicates": self.duplicates, "database": self.database, "pending": self.pending,
                "problems": self.problems, "missing": self.missing[:MAX_LISTED], "missingCount": len(self.missing),
                "extra": self.extra[:MAX_LISTED], "extraCount": len(self.extra),
                "mismatched": self.mismatched[:MAX_LISTED], "mismatchedCount": len(self.mismatched)}

    def text(self) -> str:
        lines = [f"archive {self.archive}: {self.segments} segments, {self.archived} changes"
                 f" ({self.duplicates} duplicate copies)",
                 f"database: {self.database} changes, {self.pending} not yet archived (relay lag)"]
        lines += [f"PROBLEM {p}" for p in self.problems]
        for label, ids in (("missing from the archive", self.missing), ("not in the database", self.extra),
                           ("differ from the database", self.mismatched)):
            if ids:
                shown = ", ".join(str(i) for i in ids[:MAX_LISTED])
                lines.append(f"PROBLEM {len(ids)} changes {label}: {shown}{' …' if len(ids) > MAX_LISTED else ''}")
        lines.append("OK: the archive holds every change the database holds" if self.ok else "FAILED")
        return "\n".join(lines)


async def verify_archive(db: Database, reader: ArchiveReader, *, consumer: str = "archive") -> VerifyReport:
    report = VerifyReport(reader.store.describe())
    archived: dict[int, Change] = {}
    last_seq: dict[str, int] = {}
    entries, report.problems = await reader.entries()
    report.segments = len(entries)
    archive_pos = entries[-1].position if entries else None
    for entry in entries:
        try:
            changes = await reader.segment(entry)
        except ArchiveProblem as exc:
            report.problems.append(str(exc))
            continue
        for change in changes:
            if change.id in archived:
                report.duplicates += 1
                continue
            archived[change.id] = change
            if change.intent_seq <= last_seq.get(change.intent_id, 0):
                report.problems.append(f"change {change.id}: intent {change.intent_id} sequence went back "
                                       f"to {change.intent_seq}")
            last_seq[change.intent_id] = change.intent_seq
    report.archived = len(archived)
    pos = await read_offset(db, consumer)
    if archive_pos is not None and archive_pos.key() > pos.key():
        pos = archive_pos
    log = ChangeLog(db)
    after = 0
    while changes := await log.after(after, PAGE):
        after = changes[-1].id
        for stored in changes:
            report.database += 1
            have = archived.pop(stored.id, None)
            if have is None:
                if pos.covers(stored.id, stored.txid):
                    report.missing.append(stored.id)
                else:
                    report.pending += 1
            elif not have.same_content(stored):
                report.mismatched.append(stored.id)
    report.extra = sorted(archived)
    return report


async def timeline(db: Database, intent_id: str, reader: ArchiveReader | None = None) -> list[Change]:
    """An intent's changes, oldest first: from the database, or from the archive."""
    if reader is None:
        return await ChangeLog(db).of_intent(intent_id)
    seen: dict[int, Change] = {}
    async for change in reader.changes():
        if change.intent_id == intent_id:
            seen.setdefault(change.id, change)
    return sorted(seen.values(), key=lambda c: c.intent_seq)


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
    return " ".join(parts)


def format_timeline(intent_id: str, changes: list[Change]) -> str:
    if not changes:
        return f"{intent_id}: no history"
    lines = [f"{intent_id} (merchant {changes[0].merchant_id}): {len(changes)} changes"]
    for e in render_history(changes):
        lines.append(f"  #{e['sequence']:<3} {e['createdAt']}  {e['type']:<22} {e['objectId']:<36} "
                     f"{_summary(e['data'])}")
    return "\n".join(lines)
