"""Pruning the change log (SPEC §8): the bound under each of its limits, the guard, the
archive checked before anything goes, --dry-run, partitions (PostgreSQL), size gauges.

Both databases. On PostgreSQL each test's database is migrated with small partitions (20
ids) so that pruning drops and creates real partitions with a few dozen changes.
"""
from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from paygate_server.cdc.archive import GENESIS, ArchiveReader, ArchiveSink, entry_hash
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.index import reindex
from paygate_server.cdc.prune import HistoryPruner, run_scheduled
from paygate_server.cdc.relay import Relay
from paygate_server.cdc.store import LocalStore
from paygate_server.clock import now_us
from paygate_server.storage import Database
from paygate_server.storage import change_log_partitions as parts
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.history_prune import HistoryPruneStore
from paygate_server.webhooks.events import WebhookConsumer
from tests.server.cdc.conftest import all_changes, new_intent, new_merchant, touch
from tests.server.cdc.prune_support import WIDTH, archive, archived, count, settings, write_changes
from tests.support.eventually import eventually
from tests.support.pruning import forget_index


async def test_only_the_pruning_path_deletes(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """A plain DELETE, any UPDATE (and TRUNCATE on PostgreSQL) are refused before and after
    a pruning run; the guard is closed again after it."""
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    statements = ["DELETE FROM change_log", "DELETE FROM change_log WHERE id = (SELECT min(id) FROM change_log)",
                  "UPDATE change_log SET data = '{}'", "UPDATE change_log SET intent_seq = intent_seq + 100"]
    if not pdb.is_sqlite:
        statements.append("TRUNCATE change_log")
    total = await count(pdb)

    async def refused() -> None:
        for statement in statements:
            with pytest.raises(Exception, match="append-only"):
                async with pdb.write() as conn:
                    await conn.execute(text(statement))

    await refused()
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.rows > 0 and await count(pdb) == total - report.rows
    assert await count(pdb, "SELECT through_id FROM change_log_prune") == 0
    await write_changes(pdb, 1)  # (on SQLite everything went)
    await refused()


async def test_everything_archived_and_delivered_past_retention_goes(
        pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    intents = await write_changes(pdb, 12)
    before = await all_changes(pdb)
    await archive(pdb, store, tmp_path)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    kept = await all_changes(pdb)
    if pdb.is_sqlite:
        assert kept == [] and report.rows == len(before) and report.pruned_through == before[-1].id
        # The freed pages went back to the file system (incremental vacuum).
        assert await count(pdb, "SELECT freelist_count FROM pragma_freelist_count()") == 0
    else:
        # Whole partitions only: what is left is the last partition's part at or below the bound.
        assert report.partitions_dropped and all(c.id >= report.pruned_through for c in kept)
        assert report.rows == len(before) - len(kept) and report.pruned_through % WIDTH == WIDTH - 1
    assert (report.first_id, report.last_id) == (before[0].id, report.pruned_through)
    # Every change is in the archive, equal to what the database held.
    copies = await archived(store)
    assert all(copies[c.id].same_content(c) for c in before)
    # A change after pruning continues its intent's sequence.
    async with pdb.write() as conn:
        await touch(pdb_conn := conn, intents[0])  # noqa: F841 - named for clarity
    last = (await all_changes(pdb))[-1]
    assert (last.intent_id, last.intent_seq) == (intents[0], 5)


async def test_retention_limits_the_bound(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    total = await count(pdb)
    report = await HistoryPruner(pdb, store, settings(tmp_path, retention_s=3600)).run()
    assert (report.rows, report.limited_by, await count(pdb)) == (0, ["retention"], total)
    # An hour later they are past retention.
    later = await HistoryPruner(pdb, store, settings(tmp_path, retention_s=3600)).run(now=now_us() + 3601 * 10**6)
    assert later.rows > 0 and "retention" not in later.limited_by


async def test_retention_counts_from_each_change(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Old changes go, recent ones (captured after the cutoff) stay, whatever their neighbours."""
    await write_changes(pdb, 2)
    cutoff = now_us()
    await write_changes(pdb, 2)
    await archive(pdb, store, tmp_path)
    changes = await all_changes(pdb)
    first_recent = next(c.id for c in changes if c.created_at > cutoff)
    report = await HistoryPruner(pdb, store, settings(tmp_path, retention_s=1)).run(now=cutoff + 10**6)
    assert report.limits["retention"] == first_recent - 1
    assert report.bound <= first_recent - 1
    assert all(c.id >= first_recent or c.id > report.pruned_through for c in await all_changes(pdb))


async def test_a_consumer_behind_blocks_what_it_has_not_had(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Every consumer in cdc_offsets counts — also one no longer configured — until forgotten."""
    await write_changes(pdb, 10)
    await archive(pdb, store, tmp_path)
    changes = await all_changes(pdb)
    behind = changes[len(changes) // 2].id
    # A position that covers exactly the ids up to `behind` (Position.covers) on either database.
    pos = Position(0, 2**62, behind)
    async with pdb.write() as conn:
        await conn.execute(text("INSERT INTO cdc_offsets (consumer, horizon, window_end, last_id, delivered,"
                                " updated_at) VALUES ('gone', :h, :w, :l, 0, 0)"),
                           {"h": pos.horizon, "w": pos.window_end, "l": pos.last_id})
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.limits["consumers"] == behind and report.consumer == "gone"
    # On PostgreSQL the bound falls to the end of the last whole partition below it.
    assert report.limited_by == (["consumers"] if pdb.is_sqlite else ["partition"])
    assert report.pruned_through <= behind
    assert [c.id for c in await all_changes(pdb)] == [c.id for c in changes if c.id > report.pruned_through]
    assert await HistoryPruneStore(pdb).forget_consumer("gone")
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.consumer is None or report.limits["consumers"] == changes[-1].id


async def test_nothing_unarchived_is_deleted(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Changes captured after the archive ran stay (the archive consumer has not had them)."""
    await write_changes(pdb, 6)
    await archive(pdb, store, tmp_path)
    archived_ids = set(await archived(store))
    await write_changes(pdb, 6)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    left = {c.id for c in await all_changes(pdb)}
    assert report.rows > 0 and report.pruned_through <= max(archived_ids)
    assert all(i in left for i in range(max(archived_ids) + 1, max(left) + 1))
    assert all(i in archived_ids for i in range(1, report.pruned_through + 1))


def _segment_files(store: LocalStore) -> list[Path]:
    return sorted((store.root / "segments").iterdir())


@pytest.mark.parametrize("damage", ["corrupt", "missing", "different"])
async def test_a_bad_segment_blocks_its_range(pdb: Database, store: LocalStore, tmp_path: Path, damage: str) -> None:
    await write_changes(pdb, 10)
    await archive(pdb, store, tmp_path)
    before = await all_changes(pdb)
    segments = _segment_files(store)
    assert len(segments) >= 4
    victim = segments[1]
    first_in_victim = min(c.id for c in await ArchiveReader(store).segment(
        (await ArchiveReader(store).entries())[0][1]))
    if damage == "corrupt":
        victim.write_bytes(victim.read_bytes()[:-5] + b"xxxxx")
    elif damage == "missing":
        victim.unlink()
    else:
        # A well-formed segment whose checksum matches its entry but whose change differs
        # from the database cannot be made without editing the manifest (caught by the chain):
        # so edit the database side's view instead — compare against a copy with one change altered.
        lines = gzip.decompress(victim.read_bytes()).splitlines()
        victim.write_bytes(gzip.compress(b"\n".join([lines[0].replace(b'"op":', b'"op" :'), *lines[1:]]) + b"\n",
                                         mtime=0))
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.limits["archive"] is not None and report.limits["archive"] < first_in_victim
    assert "archive" in report.limited_by and report.archive_problem
    assert report.pruned_through < first_in_victim
    left = await all_changes(pdb)
    assert [c.id for c in left] == [c.id for c in before if c.id > report.pruned_through]


async def test_a_segment_the_index_by_intent_does_not_cover_blocks_its_range(
        pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Once gone from the database, a change the index does not name could not be found by its
    intent: it stays until `paygate audit reindex` has indexed its segment."""
    await write_changes(pdb, 10)
    await archive(pdb, store, tmp_path)
    before = await all_changes(pdb)
    reader = ArchiveReader(store)
    entries, _ = await reader.entries()
    victim = entries[1]
    first_in_victim = min(c.id for c in await reader.segment(victim))
    one = next(iter(await ArchiveIndex(pdb).of_segment(victim.number)))
    await forget_index(pdb, "segment = :n AND intent_id = :pid", n=victim.number, pid=one)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.limits["archive"] is not None and report.limits["archive"] < first_in_victim
    assert report.archive_problem == f"{victim.object}: not indexed by intent (run `paygate audit reindex`)"
    assert report.pruned_through < first_in_victim
    assert [c.id for c in await all_changes(pdb)] == [c.id for c in before if c.id > report.pruned_through]

    done = await reindex(reader, ArchiveIndex(pdb))
    assert (done.indexed, done.segments, done.problems) == (1, len(entries), [])
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.archive_problem is None and report.pruned_through >= first_in_victim, report.text()


async def test_scheduled_pruning_says_once_why_it_stopped(
        pdb: Database, store: LocalStore, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An operator learns that pruning holds back (a segment not indexed): one warning while
    it lasts, not one per run."""
    await write_changes(pdb, 10)
    await archive(pdb, store, tmp_path)
    victim = (await ArchiveReader(store).entries())[0][1]
    await forget_index(pdb, "segment = :n", n=victim.number)
    runs = 0
    real_run = HistoryPruner.run

    async def counted(self: HistoryPruner, **kwargs: Any) -> Any:
        nonlocal runs
        runs += 1
        return await real_run(self, **kwargs)

    caplog.set_level(logging.WARNING, logger="paygate.cdc")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HistoryPruner, "run", counted)
        task = asyncio.create_task(run_scheduled(pdb, store, replace(settings(tmp_path), history_prune_interval_s=0.01)))
        try:
            await eventually(lambda: runs, until=lambda n: n >= 4, what="four pruning runs")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    warnings = [r.getMessage() for r in caplog.records if "history pruning stops" in r.getMessage()]
    assert warnings == [f"history pruning stops at the archive: {victim.object}: not indexed by intent"
                        " (run `paygate audit reindex`)"]


async def test_a_change_differing_from_its_archived_copy_is_kept(
        pdb: Database, store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    await write_changes(pdb, 6)
    await archive(pdb, store, tmp_path)
    changes = await all_changes(pdb)
    altered = changes[5].id
    real_segment = ArchiveReader.segment

    async def segment(self: ArchiveReader, entry: object) -> list[Change]:
        got = await real_segment(self, entry)  # type: ignore[arg-type]
        return [replace(c, data='{"status": "forged"}') if c.id == altered else c for c in got]

    monkeypatch.setattr(ArchiveReader, "segment", segment)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.limits["archive"] == altered - 1
    assert report.archive_problem == f"change {altered} differs from the archived copy"
    left = {c.id for c in await all_changes(pdb)}
    assert all(c.id in left for c in changes if c.id >= altered)


async def test_dry_run_changes_nothing(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    before = await all_changes(pdb)
    layout = await HistoryPruneStore(pdb).partitions() if not pdb.is_sqlite else None
    state = await HistoryPruneStore(pdb).state()
    dry = await HistoryPruner(pdb, store, settings(tmp_path)).run(dry_run=True)
    assert dry.rows > 0 and dry.dry_run
    assert await all_changes(pdb) == before
    assert await HistoryPruneStore(pdb).state() == state
    if layout is not None:
        assert await HistoryPruneStore(pdb).partitions() == layout
    real = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert (real.rows, real.first_id, real.last_id, real.partitions_dropped) == (
        dry.rows, dry.first_id, dry.last_id, dry.partitions_dropped)


async def test_partitions_dropped_and_created_ahead(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    if pdb.is_sqlite:
        pytest.skip("partitions are PostgreSQL's")
    hist = HistoryPruneStore(pdb)
    initial, has_default = await hist.partitions()
    assert has_default and [(p.lo, p.hi) for p in initial] == [(0, 20), (20, 40), (40, 60)]
    await write_changes(pdb, 15)  # 60 changes: ids 1..60, past the last partition made at migration
    assert await count(pdb, f"SELECT count(*) FROM {parts.DEFAULT_PARTITION}") == 1  # id 60
    await archive(pdb, store, tmp_path)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.partitions_dropped == ["change_log_p000000000000000", "change_log_p000000000000020",
                                         "change_log_p000000000000040"]
    assert report.pruned_through == 59 and report.rows == 59
    after, _ = await hist.partitions()
    # New partitions start above the DEFAULT partition's row (60) and reach 2 beyond the one
    # the next id (61) falls in; until then ids go to DEFAULT.
    assert [(p.lo, p.hi) for p in after] == [(80, 100), (100, 120)]
    assert report.partitions_created == [p.name for p in after]
    # The row in DEFAULT goes, under the guard, with the next partition dropped above it.
    await write_changes(pdb, 10)
    await archive(pdb, store, tmp_path)
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert report.partitions_dropped == ["change_log_p000000000000080"]
    assert await count(pdb, f"SELECT count(*) FROM {parts.DEFAULT_PARTITION}") == 0
    assert min(c.id for c in await all_changes(pdb)) == 100
    copies = await archived(store)
    assert all(i in copies for i in range(1, 100))


async def test_sizes_and_archive_lag(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    await write_changes(pdb, 4)
    size = await HistoryPruneStore(pdb).size()
    assert size.pending_archive is None  # no archive consumer yet
    await archive(pdb, store, tmp_path)
    await write_changes(pdb, 2)
    if not pdb.is_sqlite:
        async with pdb.write() as conn:
            await conn.execute(text("ANALYZE change_log"))
    size = await HistoryPruneStore(pdb).size()
    assert size.pending_archive == 8
    assert size.rows == 24 and size.bytes > 0


async def test_webhooks_after_pruning_announce_only_real_transitions(
        pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """A change to an intent whose earlier changes were pruned, seen by a webhook consumer
    that remembers nothing (a restart): no second payment_intent.succeeded for an update that
    kept the status, and a real transition is still announced."""
    merchant = await new_merchant(pdb)
    intents = []
    for _ in range(12):  # 36 changes: one whole partition and more on PostgreSQL
        async with pdb.write() as conn:
            pid = await new_intent(conn, merchant)
        for status in ("in_progress", "succeeded"):
            async with pdb.write() as conn:
                await touch(conn, pid, status)
        intents.append(pid)

    async def deliver() -> None:
        await Relay(pdb, settings(tmp_path), [ArchiveSink(store, ArchiveIndex(pdb), batch_size=8, linger_s=0.0),
                                              WebhookConsumer(batch_size=50)]).drain()

    await deliver()
    report = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    first = intents[0]
    assert report.pruned_through >= 3 and not [c for c in await all_changes(pdb) if c.intent_id == first]
    events = "SELECT count(*) FROM webhook_events WHERE object_id = '{}'"
    assert await count(pdb, events.format(first)) == 3  # created, in_progress, succeeded
    async with pdb.write() as conn:
        await touch(conn, first)  # an update that keeps the status
    await deliver()
    assert await count(pdb, events.format(first)) == 3
    async with pdb.write() as conn:
        await touch(conn, first, "canceled")
    await deliver()
    assert await count(pdb, events.format(first)) == 4


async def test_a_run_reads_the_archive_from_its_cursor(pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """The next run resumes at the cursor: segments wholly pruned before are not read again
    (here they are gone and it still prunes), and the chain is checked from the hash the
    cursor recorded — an entry edited after it blocks."""
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    first = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    cursor = (await HistoryPruneStore(pdb).state()).cursor
    assert first.rows > 0 and cursor.next_segment > 1 and cursor.prev_hash != "0" * 64
    for number in range(1, cursor.next_segment):
        (store.root / f"segments/{number:012d}.jsonl.gz").unlink()
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    second = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert second.rows > 0 and second.archive_problem is None
    # An entry after the new cursor, edited: pruning stops before its changes.
    cursor = (await HistoryPruneStore(pdb).state()).cursor
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    entry = store.root / f"manifest/{cursor.next_segment:012d}.json"
    fields = json.loads(entry.read_bytes())
    fields["createdAt"] = "2000-01-01T00:00:00Z"
    entry.write_text(json.dumps(fields))
    third = await HistoryPruner(pdb, store, settings(tmp_path)).run()
    assert third.archive_problem == f"manifest/{cursor.next_segment:012d}.json: does not chain to the previous entry (edited)"
    assert third.pruned_through == second.pruned_through


def _rechain(root: Path) -> None:
    """Recompute every manifest entry's checksums and hash chain from the segments as they are
    (what someone rewriting the archive does so that the chain still holds)."""
    prev = GENESIS
    for path in sorted((root / "manifest").iterdir()):
        fields = json.loads(path.read_bytes())
        data = (root / fields["object"]).read_bytes()
        fields.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), prev=prev)
        fields["hash"] = prev = entry_hash(fields)
        path.write_text(json.dumps(fields))


async def test_verify_holds_the_pruned_archive_to_the_hash_pruning_recorded(
        pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Once pruned, the archive is the only copy of a change, and an unkeyed hash chain can be
    recomputed by whoever rewrites it: the database keeps the hash of the last entry pruning
    verified (the cursor's), and verify holds the archive to it. Before, a pruned change
    rewritten (an older amount) with the chain recomputed verified OK (only an entity's
    newest change is compared with its row)."""
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    await HistoryPruner(pdb, store, settings(tmp_path)).run()
    cursor = (await HistoryPruneStore(pdb).state()).cursor
    assert cursor.next_segment > 2
    assert (await verify_archive(pdb, ArchiveReader(store))).ok
    root = store.root
    segment = root / "segments" / "000000000001.jsonl.gz"
    lines = gzip.decompress(segment.read_bytes()).splitlines()
    first = json.loads(lines[0])  # an intent's creation: not its newest change
    assert first["seq"] == 1
    first["data"]["amount"] += 1
    segment.write_bytes(gzip.compress(b"\n".join([orjson.dumps(first), *lines[1:]]) + b"\n", mtime=0))
    _rechain(root)
    report = await verify_archive(pdb, ArchiveReader(store))
    assert not report.ok and any("pruning recorded" in p for p in report.problems), report.text()


async def test_verify_holds_a_segment_pruning_took_part_of_to_the_hash_pruning_saw(
        pdb: Database, store: LocalStore, tmp_path: Path) -> None:
    """Pruning can stop inside a segment (the retention cutoff, a partition's end): its
    cursor stays on that segment, the next run reads the rest of it. The changes it took
    from that segment are then in the archive only — and the anchor was the hash of the
    entry before it (or none at all, before the first segment), so that segment, rewritten
    with the chain recomputed, verified OK."""
    await write_changes(pdb, 5)  # 20 changes: segments of 8 (the third 17-24), partitions of 20 ids
    cutoff = now_us()
    await write_changes(pdb, 7)
    await archive(pdb, store, tmp_path)
    report = await HistoryPruner(pdb, store, settings(tmp_path, retention_s=1)).run(now=cutoff + 10**6)
    through = report.pruned_through
    assert through > 0
    cursor = (await HistoryPruneStore(pdb).state()).cursor
    root = store.root
    straddled = root / "segments" / f"{cursor.next_segment:012d}.jsonl.gz"
    lines = gzip.decompress(straddled.read_bytes()).splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["id"] <= through < records[-1]["id"], "pruning did not stop inside a segment"
    assert (await verify_archive(pdb, ArchiveReader(store))).ok
    # A pruned change of that segment that is not its entity's newest: rewritten, no copy left.
    newest = {(r["entity"], r["entityId"]): r["id"] for r in records}
    victim = next(i for i, r in enumerate(records)
                  if r["id"] <= through and newest[(r["entity"], r["entityId"])] != r["id"] and "amount" in r["data"])
    records[victim]["data"]["amount"] += 1
    straddled.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records), mtime=0))
    _rechain(root)
    tampered = await verify_archive(pdb, ArchiveReader(store))
    assert not tampered.ok and any("pruning recorded" in p for p in tampered.problems), tampered.text()
    # And pruning itself, reading on from that segment, holds it to the hash it read.
    later = await HistoryPruner(pdb, store, settings(tmp_path, retention_s=1)).run(now=now_us() + 10**6)
    assert later.pruned_through == through
    assert later.archive_problem is not None and "not the entry pruning read" in later.archive_problem, later.text()
