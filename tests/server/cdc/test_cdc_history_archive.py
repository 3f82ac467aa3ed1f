"""The archive's index by intent, whole timelines (archive + database) and the streaming verify,
on both databases, in a folder and in an S3 bucket (moto).

Pruning is simulated by ``tests/support/pruning.py`` (see there).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from paygate_server.cdc.archive import ArchiveProblem, ArchiveReader, ArchiveSink, decode_segment
from paygate_server.cdc.audit import IdIntervals, SequenceTracker, holes, verify_archive
from paygate_server.cdc.index import INDEXED_VERSION, ranges_of, reindex, segments_of
from paygate_server.cdc.relay import Relay
from paygate_server.cdc.s3 import S3Store
from paygate_server.cdc.store import LocalStore, ObjectStore
from paygate_server.cdc.timeline import HistoryGap, archived_timeline, whole_timeline
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex, SeqRange
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import Change
from tests.server.cdc.conftest import all_changes, new_intent, new_merchant, touch
from tests.support.app import TEST_MASTER_KEY
from tests.support.pruning import forget_index, prune_rows, unguarded
from tests.support.slow_set import is_slow_run

FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)


class SpyStore:
    """A real store, with every call it receives recorded."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, str]] = []

    async def put(self, name: str, data: bytes) -> None:
        self.calls.append(("put", name))
        await self.inner.put(name, data)

    async def put_new(self, name: str, data: bytes) -> None:
        self.calls.append(("put", name))
        await self.inner.put_new(name, data)

    async def get(self, name: str) -> bytes:
        self.calls.append(("get", name))
        return await self.inner.get(name)

    async def list(self, prefix: str) -> list[str]:
        self.calls.append(("list", prefix))
        return await self.inner.list(prefix)

    def describe(self) -> str:
        return self.inner.describe()

    async def close(self) -> None:
        await self.inner.close()


class SpyIndex(ArchiveIndex):
    """The real index, each record noted in a SpyStore's calls (to see it among the puts)."""

    def __init__(self, db: Database, calls: list[tuple[str, str]]) -> None:
        super().__init__(db)
        self.calls = calls

    async def record(self, segment: int, ranges: Mapping[str, SeqRange]) -> None:
        self.calls.append(("index", f"{segment:012d}"))
        await super().record(segment, ranges)


async def _still_append_only(db: Database) -> None:
    with pytest.raises(Exception, match="append-only"):
        async with db.write() as conn:
            await conn.execute(text("DELETE FROM change_log"))


async def _archive(db: Database, store: ObjectStore, batch: int = 3) -> None:
    index = SpyIndex(db, store.calls) if isinstance(store, SpyStore) else ArchiveIndex(db)
    await Relay(db, FAST, [ArchiveSink(store, index, batch_size=batch, linger_s=0.0)]).drain()


async def _history(db: Database, store: ObjectStore, rounds: int = 3) -> tuple[str, list[str]]:
    """Three intents of one merchant, each touched in several rounds, archived after each round
    (segments of 3 changes): every intent ends up spread over several segments."""
    merchant = await new_merchant(db)
    async with db.write() as conn:
        ids = [await new_intent(conn, merchant, amount=100 + i) for i in range(3)]
    await _archive(db, store)
    for r in range(rounds):
        for pid in ids:
            async with db.write() as conn:
                await touch(conn, pid, "in_progress" if r < rounds - 1 else "canceled")
        await _archive(db, store)
    return merchant, ids


def _same(a: list[Change], b: list[Change]) -> bool:
    return len(a) == len(b) and all(x.same_content(y) for x, y in zip(a, b, strict=True))


async def _segments_holding(store: ObjectStore, intent_id: str) -> dict[int, list[int]]:
    reader = ArchiveReader(store)
    entries, problems = await reader.entries()
    assert not problems
    held: dict[int, list[int]] = {}
    for entry in entries:
        seqs = [c.intent_seq for c in await reader.segment(entry) if c.intent_id == intent_id]
        if seqs:
            held[entry.number] = seqs
    return held


# -- the index -------------------------------------------------------------------------------


def test_the_index_holds_each_intents_sequence_range_in_a_segment() -> None:
    changes = [Change(i, "payment_intent", pid, "update", pid, "mer_1", seq, "{}", None, 0)
               for i, (pid, seq) in enumerate([("pi_a", 5), ("pi_b", 1), ("pi_a", 4), ("pi_a", 6)], start=10)]
    assert ranges_of(changes) == {"pi_a": (4, 6), "pi_b": (1, 1)}


async def test_a_second_record_of_a_segment_widens_its_range(db: Database) -> None:
    """A segment number reused after a crash before its entry: both records hold (a hint
    that may say more than the segment has, never less)."""
    index = ArchiveIndex(db)
    await index.record(3, {"pi_a": (1, 2)})
    await index.record(3, {"pi_a": (3, 4), "pi_b": (1, 1)})
    await index.record(5, {"pi_a": (5, 5)})
    await index.record(9, {"pi_ab": (1, 1), "pi_a'); --": (1, 1)})  # a longer id sharing the prefix; hostile
    assert [(r.segment, r.first_seq, r.last_seq) for r in await segments_of(index, "pi_a")] == [(3, 1, 4), (5, 5, 5)]
    assert await index.of_segment(3) == {"pi_a": (1, 4), "pi_b": (1, 1)}
    assert [r.segment for r in await segments_of(index, "pi_a'); --")] == [9]


async def test_the_index_is_written_before_each_entry_and_names_every_segment_of_an_intent(
        db: Database, tmp_path: Path) -> None:
    spy = SpyStore(LocalStore(tmp_path / "archive"))
    _, ids = await _history(db, spy)
    reader = ArchiveReader(spy)
    entries, problems = await reader.entries()
    assert not problems and len(entries) >= 4
    puts = [name for op, name in spy.calls if op == "put"]
    assert not [name for name in puts if not name.startswith(("segments/", "manifest/"))], puts
    writes = [name for op, name in spy.calls if op in ("put", "index")]
    for entry in entries:
        assert entry.fields["version"] == INDEXED_VERSION == 3
        segment_at = writes.index(entry.object)
        entry_at = writes.index(f"manifest/{entry.number:012d}.json")
        assert segment_at < writes.index(f"{entry.number:012d}") < entry_at, (entry.number, writes)
    for pid in ids:
        held = await _segments_holding(spy, pid)
        refs = await segments_of(ArchiveIndex(db), pid)
        assert [(r.segment, r.first_seq, r.last_seq) for r in refs] == [
            (n, min(seqs), max(seqs)) for n, seqs in sorted(held.items())]
        assert len(refs) >= 2  # spread over several segments


# -- whole timelines -------------------------------------------------------------------------


async def test_the_archive_is_not_read_while_the_database_holds_the_whole_history(
        db: Database, tmp_path: Path) -> None:
    spy = SpyStore(LocalStore(tmp_path / "archive"))
    _, ids = await _history(db, spy)
    spy.calls.clear()
    timeline = await whole_timeline(db, ids[0], spy)
    assert spy.calls == []
    assert [c.intent_seq for c in timeline] == [1, 2, 3, 4]
    assert _same(timeline, await ChangeLog(db).of_intent(ids[0]))


async def test_a_timeline_is_identical_after_its_rows_leave_the_database(db: Database, tmp_path: Path) -> None:
    spy = SpyStore(LocalStore(tmp_path / "archive"))
    merchant, ids = await _history(db, spy)
    before = {pid: await whole_timeline(db, pid, spy) for pid in ids}

    # The oldest changes go first, as pruning takes them: the database keeps a suffix.
    assert await prune_rows(db, "intent_id = :pid AND intent_seq <= 2", pid=ids[0]) == 2
    spy.calls.clear()
    after = await whole_timeline(db, ids[0], spy, merchant_id=merchant)
    assert _same(after, before[ids[0]])
    # Only the segments holding sequences 1-2 were read (entry + segment each; the index is the database's).
    wanted = {n for n, seqs in (await _segments_holding(spy.inner, ids[0])).items() if min(seqs) <= 2}
    read = {name for op, name in spy.calls if op == "get" and name.startswith("segments/")}
    assert read == {f"segments/{n:012d}.jsonl.gz" for n in wanted}
    assert [c for c in spy.calls if c[0] == "list"] == []

    # Wholly gone from the database: the archive alone, same timeline; another merchant sees nothing.
    await prune_rows(db, "intent_id IN (:a, :b)", a=ids[0], b=ids[1])
    assert await ChangeLog(db).of_intent(ids[0]) == []
    for pid in ids:
        assert _same(await whole_timeline(db, pid, spy, merchant_id=merchant), before[pid])
    assert await whole_timeline(db, ids[0], spy, merchant_id="mer_someoneelse0000000000") == []
    assert await whole_timeline(db, "pi_neverexisted000000000", spy) == []
    await _still_append_only(db)


async def test_a_timeline_with_a_hole_is_an_error_never_a_shorter_list(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = LocalStore(root)
    _, ids = await _history(db, store)
    await prune_rows(db, "intent_id = :pid AND intent_seq <= 3", pid=ids[1])
    held = await _segments_holding(store, ids[1])
    first = min(held)  # holds sequence 1

    index = ArchiveIndex(db)
    aside = await index.of_segment(first)
    await forget_index(db, "intent_id = :pid AND segment = :n", pid=ids[1], n=first)  # no longer names it
    with pytest.raises(HistoryGap, match=f"{ids[1]} is incomplete: sequence 1 is in neither"):
        await whole_timeline(db, ids[1], store)
    await index.record(first, {ids[1]: aside[ids[1]]})
    assert [c.intent_seq for c in await whole_timeline(db, ids[1], store)] == [1, 2, 3, 4]

    (root / "segments" / f"{first:012d}.jsonl.gz").unlink()
    with pytest.raises(ArchiveProblem, match=f"segments/{first:012d}.jsonl.gz: missing"):
        await whole_timeline(db, ids[1], store)
    # No archive configured: the database alone, and its hole is an error too.
    with pytest.raises(HistoryGap, match="sequences 1-3 are in neither"):
        await whole_timeline(db, ids[1], None)


async def test_timeline_and_verify_in_an_s3_bucket(db: Database, moto_s3: str) -> None:
    import boto3  # comes with moto

    creds = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret-test"}
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1", **creds)
    bucket = f"paygate-idx-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    store = S3Store(bucket=bucket, prefix="prod", endpoint=moto_s3, region="us-east-1",
                    access_key=creds["aws_access_key_id"], secret_key=creds["aws_secret_access_key"])
    try:
        merchant, ids = await _history(db, store)
        before = await whole_timeline(db, ids[2], store)
        assert len(await segments_of(ArchiveIndex(db), ids[2])) >= 2
        assert s3.list_objects_v2(Bucket=bucket, Prefix="prod/index/")["KeyCount"] == 0  # not in the bucket
        total = len(await all_changes(db))
        pruned = await prune_rows(db, "id <= :through", through=total - 4)  # all but the newest 4
        assert _same(await whole_timeline(db, ids[2], store, merchant_id=merchant), before)
        report = await verify_archive(db, ArchiveReader(store))
        assert report.ok and report.archive_only == pruned and report.database == 4, report.text()

        # An archive written before the index, in the bucket: reindex builds it from there too.
        await forget_index(db)
        for name, body in _old_style_entries([s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(
                o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="prod/manifest/")["Contents"])]):
            s3.put_object(Bucket=bucket, Key=f"prod/{name}", Body=body)
        assert not (await verify_archive(db, ArchiveReader(store))).ok
        with pytest.raises(HistoryGap):
            await whole_timeline(db, ids[2], store)
        done = await reindex(ArchiveReader(store), ArchiveIndex(db))
        assert done.indexed == done.segments == 4 and not done.problems
        assert s3.list_objects_v2(Bucket=bucket, Prefix="prod/index/")["KeyCount"] == 0
        assert _same(await whole_timeline(db, ids[2], store, merchant_id=merchant), before)
        assert (await verify_archive(db, ArchiveReader(store))).ok

        s3.delete_object(Bucket=bucket, Key="prod/segments/000000000002.jsonl.gz")
        report = await verify_archive(db, ArchiveReader(store))
        assert not report.ok and "segments/000000000002.jsonl.gz: missing" in report.problems
        assert report.lost and report.lost_count == 3, report.text()  # its 3 changes are nowhere now
    finally:
        await store.close()


# -- verify ----------------------------------------------------------------------------------


async def test_verify_proves_completeness_pruned_or_not(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = LocalStore(root)
    await _history(db, store)
    total = len(await all_changes(db))
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and (report.archived, report.database, report.archive_only) == (total, total, 0), report.text()
    assert report.newest == total and report.lost == []

    pruned = await prune_rows(db, "id <= :through", through=total // 2)
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok, report.text()
    assert (report.archive_only, report.database, report.newest) == (pruned, total - pruned, total)
    assert report.intents_tracked == 3 and report.intervals_peak == 1

    # Deleting one archived segment fails verify, naming the segment and the ids now nowhere.
    entry = json.loads((root / "manifest" / "000000000002.json").read_text())
    (root / entry["object"]).unlink()
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok
    assert report.problems[0] == "segments/000000000002.jsonl.gz: missing", report.problems
    assert report.lost == [(entry["firstId"], entry["lastId"])], report.text()
    assert f"in neither the archive nor the database: {entry['firstId']}-{entry['lastId']}" in report.text()


async def test_verify_fails_on_a_change_in_neither_place(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    merchant, ids = await _history(db, store, rounds=1)
    async with db.write() as conn:  # not archived yet: pending, not a failure
        await touch(conn, ids[0], "canceled")
        await touch(conn, ids[1], "canceled")
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.pending == 2, report.text()
    newest = (await all_changes(db))[-2:]
    # The first of the two unarchived changes vanishes from the database: in neither place.
    await prune_rows(db, "id = :id", id=newest[0].id)
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok, report.text()
    # It was its intent's newest change: the row is no longer its newest change (both databases).
    assert report.stale_count == 1 and report.stale[0].startswith(f"payment_intent {ids[0]}: "), report.text()
    if db.is_sqlite:  # ids are gap-free: the hole is a loss too
        assert report.lost == [(newest[0].id, newest[0].id)], report.text()
        assert f"1 changes in neither the archive nor the database: {newest[0].id}" in report.text()
    else:  # a hole alone is what a rolled-back transaction leaves: not by itself a failure
        assert report.lost == [] and report.never_committed == [(newest[0].id, newest[0].id)], report.text()


async def test_verify_fails_when_the_newest_change_of_all_is_lost(db: Database, tmp_path: Path) -> None:
    """The tail: the very newest change, not archived yet, vanishes. No id is missing below the
    newest left, so only the row-against-its-newest-change check can see it."""
    store = LocalStore(tmp_path / "archive")
    merchant, ids = await _history(db, store, rounds=1)
    async with db.write() as conn:
        await touch(conn, ids[2], "canceled")
    newest = (await all_changes(db))[-1]
    await prune_rows(db, "id = :id", id=newest.id)
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and report.lost == [] == report.never_committed, report.text()
    assert report.stale_count == 1 and report.entities == 3, report.text()
    assert f"payment_intent {ids[2]}: its newest change (id {newest.id - 1}" in report.text()


async def test_verify_fails_on_a_change_altered_in_the_database(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    merchant, ids = await _history(db, store, rounds=1)
    async with db.write() as conn:
        await touch(conn, ids[1], "canceled")
    newest = (await all_changes(db))[-1]
    assert (await verify_archive(db, ArchiveReader(store))).ok
    data = newest.snapshot()
    data["status"] = "succeeded"
    await unguarded(db, "UPDATE change_log SET data = :data WHERE id = :id", data=json.dumps(data), id=newest.id)
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and report.stale_count == 1, report.text()
    assert report.stale == [f"payment_intent {ids[1]}: its newest change (id {newest.id}, sequence 3)"
                            " differs from the row"], report.text()
    assert report.to_json()["staleCount"] == 1 and not report.to_json()["ok"]


async def _uncaptured(db: Database, table: str, statement: str, **params: object) -> None:
    """Change a captured table with its capture triggers off for this one transaction: a row
    whose newest change is no longer the row (what a lost tail change leaves)."""
    async with db.write() as conn:
        if db.is_sqlite:
            triggers = (await conn.execute(text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table})).all()
            for name, _ in triggers:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            await conn.execute(text(statement), params)
            for _, sql in triggers:
                await conn.execute(text(sql))
        else:
            await conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params)
            await conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


async def test_a_row_is_checked_against_its_newest_archived_change_once_pruned(
        db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    merchant, ids = await _history(db, store, rounds=2)
    await prune_rows(db, "intent_id = :pid", pid=ids[0])  # its newest change is in the archive only
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.entities == 3 and report.entities_tracked == 3, report.text()
    await _uncaptured(db, "payment_intents", "UPDATE payment_intents SET amount = amount + 1 WHERE id = :pid",
                      pid=ids[0])
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and report.stale_count == 1, report.text()
    assert report.stale[0].startswith(f"payment_intent {ids[0]}: its newest change (id ")
    assert report.stale[0].endswith("sequence 3, archive only) differs from the row"), report.text()
    # A row with no change anywhere.
    await prune_rows(db, "intent_id = :pid", pid=ids[1])
    await _uncaptured(db, "payment_intents", "UPDATE payment_intents SET id = :new WHERE id = :pid",
                      pid=ids[1], new="pi_nohistory0000000000000")
    report = await verify_archive(db, ArchiveReader(store))
    assert "payment_intent pi_nohistory0000000000000: no change in the archive or the database" in report.stale


async def test_a_rolled_back_capture_is_not_a_lost_change(db: Database, tmp_path: Path) -> None:
    """PostgreSQL takes a change id from a sequence, which a rollback does not give back: the
    hole is reported as never committed, and verify passes. SQLite leaves no hole at all."""
    store = LocalStore(tmp_path / "archive")
    merchant, ids = await _history(db, store, rounds=1)
    with pytest.raises(RuntimeError):
        async with db.write() as conn:  # a write unit that captures a change, then fails
            await touch(conn, ids[0], "canceled")
            raise RuntimeError("the unit failed after capturing")
    async with db.write() as conn:
        await touch(conn, ids[1], "canceled")
    await _archive(db, store)
    changes = await all_changes(db)
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.lost == [] and report.entities == 3, report.text()
    if db.is_sqlite:
        assert report.ids_gap_free and report.never_committed == []
        assert [c.id for c in changes] == list(range(1, len(changes) + 1))
    else:
        hole = changes[-1].id - 1
        assert hole not in {c.id for c in changes}
        assert not report.ids_gap_free and report.never_committed == [(hole, hole)], report.text()
        assert f"1 change ids never committed (rolled-back transactions): {hole}" in report.text()
        assert report.to_json()["neverCommitted"] == [[hole, hole]] and report.to_json()["ok"]


async def test_verify_counts_duplicates_and_flags_a_different_copy(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    await _history(db, store, rounds=1)
    changes = await all_changes(db)
    sink = ArchiveSink(store, ArchiveIndex(db), batch_size=10, linger_s=0.0)
    await sink.start()
    await sink.deliver(changes[:2], None)  # at-least-once: a re-delivered batch
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.duplicates == 2 and report.archived == len(changes), report.text()

    # A database copy that differs from the archive's (edited behind the guard).
    await unguarded(db, "UPDATE change_log SET created_at = created_at + 1 WHERE id = :id", id=changes[1].id)
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and report.mismatched.first == [changes[1].id], report.text()
    assert f"1 changes differ between the archive and the database: {changes[1].id}" in report.text()


async def test_reindex_builds_the_index_of_an_archive_written_before_it(
        db: Database, fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "archive"
    store = LocalStore(root)
    merchant, ids = await _history(db, store)
    before = await whole_timeline(db, ids[0], store)
    await _make_old_style(db, root)
    assert await archived_timeline(db, store, ids[0]) == []
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and any("not in the index by intent" in p and "reindex" in p for p in report.problems)
    monkeypatch.setattr("paygate_server.cdc.audit.MAX_LISTED", 1)  # more segments than listed: it says how many
    listed = [p for p in (await verify_archive(db, ArchiveReader(store))).problems if "not in the index" in p]
    assert listed == [f"segments not in the index by intent: 1 … ({report.segments} in all) (run `paygate audit reindex`)"]
    monkeypatch.undo()

    env = {"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    r = subprocess.run([sys.executable, "-m", "paygate_server", "audit", "reindex", "--json"],
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    done = json.loads(r.stdout)
    assert done["ok"] and done["indexed"] == done["segments"] == report.segments and done["intents"] > 0
    assert (await reindex(ArchiveReader(store), ArchiveIndex(db))).indexed == 0  # idempotent: nothing left to do
    assert (await verify_archive(db, ArchiveReader(store))).ok
    await prune_rows(db, "intent_id = :pid", pid=ids[0])
    assert _same(await whole_timeline(db, ids[0], store, merchant_id=merchant), before)
    assert _same(await archived_timeline(db, store, ids[0]), before)


def _old_style_entries(entries: list[bytes]) -> list[tuple[str, bytes]]:
    """Manifest entries as the sink wrote them before the index: version 1, the hash chain
    recomputed as that sink computed it."""
    out = []
    prev = "0" * 64
    for raw in entries:
        fields = json.loads(raw)
        fields.update(version=1, prev=prev)
        fields.pop("hash")
        fields["hash"] = hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
        out.append((f"manifest/{fields['segment']:012d}.json", orjson.dumps(fields)))
        prev = fields["hash"]
    return out


async def _make_old_style(db: Database, root: Path) -> None:
    """Turn a folder archive into what the sink wrote before the index existed."""
    await forget_index(db)
    manifest = sorted((root / "manifest").glob("*.json"))
    for name, body in _old_style_entries([p.read_bytes() for p in manifest]):
        (root / name).write_bytes(body)


# -- verify's memory -------------------------------------------------------------------------


def _synthetic(first: int, last: int, intents: int, skip: Collection[int]) -> list[Change]:
    """Changes ``first..last`` (minus ``skip``) over ``intents`` intents, round robin, each
    intent's sequence going up by one per change."""
    out = []
    for cid in range(first, last + 1):
        pid = f"pi_synthetic{(cid - 1) % intents:06d}"
        seq = (cid - 1) // intents + 1
        if cid in skip:
            continue
        data = f'{{"id":"{pid}","status":"created","amount":{cid}}}'
        out.append(Change(cid, "payment_intent", pid, "update" if seq > 1 else "insert", pid, "mer_synthetic",
                          seq, data, None, 1_700_000_000_000_000 + cid))
    return out


async def _write_synthetic(db: Database, store: ObjectStore, total: int, intents: int, skip: Collection[int],
                           per_segment: int = 5000) -> None:
    sink = ArchiveSink(store, ArchiveIndex(db), batch_size=per_segment, linger_s=0.0)
    await sink.start()
    for first in range(1, total + 1, per_segment):
        await sink.deliver(_synthetic(first, min(total, first + per_segment - 1), intents, skip), None)


@pytest.mark.slow
async def test_verify_streams_40_segments_holding_one_interval_per_run(db: Database, tmp_path: Path,
                                                                       request: pytest.FixtureRequest) -> None:
    # 200,000 changes in the slow set (tests/support/slow_set.py), 40,000 in every run: 40
    # segments either way, which is what the memory bound below is about.
    total = 200_000 if is_slow_run(request.config, {m.name for m in request.node.iter_markers()}) else 40_000
    store = LocalStore(tmp_path / "archive")
    await _write_synthetic(db, store, total, intents=50, skip=set(), per_segment=total // 40)
    async with db.write() as conn:  # every one pruned from the database, as pruning records it
        await conn.execute(text("UPDATE change_log_prune SET pruned_through = :total WHERE id = 1"),
                           {"total": total})
    # What holding one segment's changes takes (verify holding all 40 would take 40 times that).
    tracemalloc.start()
    try:
        one = decode_segment((tmp_path / "archive" / "segments" / "000000000001.jsonl.gz").read_bytes())
        one_segment = tracemalloc.get_traced_memory()[0]
        del one
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        report = await verify_archive(db, ArchiveReader(store))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert report.ok, report.text()
    assert peak < 8 * one_segment, (peak, one_segment)  # a few segments' worth at most, never 40
    assert (report.segments, report.archived, report.archive_only, report.newest) == (40, total, total, total)
    # Held while verifying: one id interval (no gap), one integer per intent — not every id.
    assert report.intervals_peak == 1 and report.intents_tracked == 50


async def test_verify_memory_is_bounded_by_the_gaps(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    skip = set(range(1000, 20_001, 1000))  # 20 changes in neither place
    await _write_synthetic(db, store, 20_000, intents=10, skip=skip, per_segment=2000)
    report = await verify_archive(db, ArchiveReader(store))
    # The ids no place holds: lost where ids are gap-free (SQLite); on PostgreSQL they could be
    # rolled-back transactions' — the per-intent sequences below are what fail there.
    assert not report.ok and (report.lost if db.is_sqlite else report.never_committed) == [
        (i, i) for i in sorted(skip) if i < 20_000]
    assert report.newest == 19_999 and report.intervals_peak == 20  # runs between the 19 holes (+ 1)
    assert "intent pi_synthetic000009: sequence 100 in neither the archive nor the database" in report.problems
    segment = decode_segment((tmp_path / "archive" / "segments" / "000000000001.jsonl.gz").read_bytes())
    assert len(segment) == 1998  # ids 1..2000 but 1000 and 2000


# -- verify's structures, case by case -------------------------------------------------------


@pytest.mark.parametrize(("adds", "intervals", "fresh"), [
    ([1, 2, 3], [(1, 3)], [True, True, True]),
    ([1, 3], [(1, 1), (3, 3)], [True, True]),
    ([1, 3, 2], [(1, 3)], [True, True, True]),  # fills the hole: joins both sides
    ([5, 4], [(4, 5)], [True, True]),  # joins the interval to its right
    ([1, 2, 2, 1], [(1, 2)], [True, True, False, False]),  # duplicates are not fresh
    ([10, 1, 5, 6, 4], [(1, 1), (4, 6), (10, 10)], [True] * 5),
    ([], [], []),
])
def test_id_intervals(adds: list[int], intervals: list[tuple[int, int]], fresh: list[bool]) -> None:
    ids = IdIntervals()
    assert [ids.add(i) for i in adds] == fresh
    assert ids.intervals() == intervals
    assert all(i in ids for i in adds) and 0 not in ids and 11 not in ids


@pytest.mark.parametrize(("a", "b", "upto", "expected"), [
    ([1, 2, 3], [], 3, []),
    ([1, 3], [], 3, [(2, 2)]),
    ([1], [3], 3, [(2, 2)]),
    ([2, 3], [5], 6, [(1, 1), (4, 4), (6, 6)]),
    ([], [], 2, [(1, 2)]),
    ([1, 2], [2, 3], 3, []),  # overlapping sources
])
def test_holes_across_both_places(a: list[int], b: list[int], upto: int, expected: list[tuple[int, int]]) -> None:
    left, right = IdIntervals(), IdIntervals()
    for i in a:
        left.add(i)
    for i in b:
        right.add(i)
    assert holes(left, right, upto) == expected


@pytest.mark.parametrize(("seqs", "problems", "gaps"), [
    ([1, 2, 3], [], []),
    ([1, 3], [], ["intent pi_a: sequence 2 in neither the archive nor the database"]),
    ([1, 4, 2, 3], [], []),  # the other place fills the hole
    ([1, 5, 3], [], ["intent pi_a: sequence 2 in neither the archive nor the database",
                     "intent pi_a: sequence 4 in neither the archive nor the database"]),
    ([1, 2, 2], ["intent pi_a: sequence 2 appears under two change ids"], []),
    ([2, 3], [], ["intent pi_a: sequence 1 in neither the archive nor the database"]),
    ([1, 6], [], ["intent pi_a: sequences 2-5 in neither the archive nor the database"]),
])
def test_sequence_tracker(seqs: list[int], problems: list[str], gaps: list[str]) -> None:
    tracker = SequenceTracker()
    assert [p for s in seqs if (p := tracker.add("pi_a", s)) is not None] == problems
    assert tracker.gaps() == gaps
    assert len(tracker.next) == 1  # one integer for the intent
