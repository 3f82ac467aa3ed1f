"""The archive: segments + hash-chained manifest, in a folder or an S3 bucket; audit verify."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from paygate_server.cdc.archive import (
    ArchiveProblem,
    ArchiveReader,
    ArchiveSink,
    encode_segment,
    entry_hash,
)
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.prune import HistoryPruner
from paygate_server.cdc.relay import Relay
from paygate_server.cdc.s3 import S3Store, sign_v4
from paygate_server.cdc.store import LocalStore, ObjectExists
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from tests.server.cdc.conftest import (
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
    touch,
)
from tests.support.app import TEST_MASTER_KEY
from tests.support.fsyncs import record_fsyncs

FAST = Settings(relay_poll_interval_s=0.01, relay_lease_retry_s=0.02)


async def _load(db: Database, n: int = 6) -> list[str]:
    merchant = await new_merchant(db)
    ids = []
    for i in range(n):
        async with db.write() as conn:
            pid = await new_intent(conn, merchant, amount=100 + i)
            await touch(conn, pid, "canceled" if i % 2 else "in_progress")
        ids.append(pid)
    return ids


async def _archive(db: Database, store: Any, batch: int = 4) -> None:
    await Relay(db, FAST, [ArchiveSink(store, ArchiveIndex(db), batch_size=batch, linger_s=0.0)]).drain()


async def _archived(store: Any) -> list[Any]:
    return [c async for c in ArchiveReader(store).changes()]


async def test_archive_holds_every_change_and_verifies(db: Database, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    await _load(db)
    await _archive(db, store)
    await _load(db, 3)
    await _archive(db, store)
    assert_exactly_once_in_order(await _archived(store), await all_changes(db))
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.pending == 0 and report.duplicates == 0, report.text()
    assert report.archived == report.database == 18 and report.segments >= 5  # at most 4 changes a segment
    entry = json.loads((tmp_path / "archive" / "manifest" / "000000000002.json").read_text())
    segment = (tmp_path / "archive" / entry["object"]).read_bytes()
    assert hashlib.sha256(segment).hexdigest() == entry["sha256"]
    lines = gzip.decompress(segment).splitlines()
    assert len(lines) == entry["changes"] <= 4
    assert {"id", "intentId", "seq", "data"} <= set(orjson.loads(lines[0]))
    assert b"client_secret" not in gzip.decompress(segment)  # the captured tables hold no secrets


async def test_verify_detects_tampering_and_loss(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = LocalStore(root)
    await _load(db)
    await _archive(db, store)
    segment = root / "segments" / "000000000002.jsonl.gz"
    original = segment.read_bytes()

    segment.write_bytes(original[:-9] + bytes([original[-9] ^ 1]) + original[-8:])
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and len(report.missing) == 4
    assert any("checksum mismatch" in p for p in report.problems), report.problems

    # Re-computing the segment's checksum in its manifest entry breaks the hash chain.
    forged = gzip.compress(gzip.decompress(original).replace(b'"canceled"', b'"succeeded"', 1), mtime=0)
    segment.write_bytes(forged)
    entry_path = root / "manifest" / "000000000002.json"
    entry = json.loads(entry_path.read_text())
    entry.update(sha256=hashlib.sha256(forged).hexdigest(), bytes=len(forged))
    entry_path.write_text(json.dumps(entry))
    report = await verify_archive(db, ArchiveReader(store))
    assert any("entry hash mismatch" in p for p in report.problems), report.problems
    assert report.mismatched, "the forged change differs from the database"

    segment.write_bytes(original)
    entry_path.unlink()
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and any("segments/000000000002.jsonl.gz: manifest entry absent" in p for p in report.problems), report.problems


@pytest.mark.parametrize("edit", [
    {"drop": "object"}, {"drop": "sha256"}, {"drop": "position"}, {"position": 5},
    {"position": {"horizon": 0, "windowEnd": "x", "lastId": 8}}, {"object": "../../outside"}, {"segment": True},
], ids=str)
async def test_an_entry_edited_out_of_shape_is_a_problem_not_a_crash(
        db: Database, tmp_path: Path, edit: dict[str, Any]) -> None:
    """An entry missing a field, or holding one of another type (its hash recomputed, so only
    its shape gives it away), is reported by verify and stops pruning and the timeline, each
    in a line: before, verify crashed on it (KeyError, TypeError: a traceback)."""
    root = tmp_path / "archive"
    store = LocalStore(root)
    await _load(db)
    await _archive(db, store)
    path = root / "manifest" / "000000000002.json"
    entry = json.loads(path.read_text())
    if "drop" in edit:
        del entry[edit["drop"]]
    else:
        entry.update(edit)
    entry["hash"] = entry_hash(entry)
    path.write_text(json.dumps(entry))
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok and any("manifest/000000000002.json" in p or "outside" in p for p in report.problems), \
        report.problems
    with pytest.raises(ArchiveProblem):
        await ArchiveReader(store).segment(await ArchiveReader(store).entry_for(2))
    if db.is_sqlite:  # (PostgreSQL's partitions here are far wider than these changes)
        pruned = await HistoryPruner(db, store, Settings(data_dir=tmp_path, history_retention_s=0)).run(dry_run=True)
        assert pruned.archive_problem and pruned.limits["archive"] == 4, pruned.text()


async def test_a_segment_written_before_a_crash_without_its_entry_is_replaced(db: Database, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = LocalStore(root)
    await _load(db, 2)
    await _archive(db, store)
    # A crash between writing segment 2 and its manifest entry leaves an orphan segment.
    await store.put("segments/000000000002.jsonl.gz", b"half-written")
    await _load(db, 2)
    await _archive(db, store)
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.pending == 0, report.text()


def test_a_folder_the_archive_creates_is_made_durable_in_its_parent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file's fsync does not make its folder's name durable: every folder a put creates
    is fsynced into its parent (else a crash could lose a segment already fsynced)."""
    synced = record_fsyncs(monkeypatch)
    root = tmp_path / "archive"
    LocalStore(root)._put("segments/2026/000000000001.jsonl.gz", b"x")
    folders = [str(root.parent), str(root), str(root / "segments"), str(root / "segments" / "2026")]
    assert [path for path in synced if path in folders] == folders, synced
    synced.clear()
    LocalStore(root)._put("segments/2026/000000000002.jsonl.gz", b"x")  # no folder created
    assert [path for path in synced if path in folders] == [str(root / "segments" / "2026")], synced


async def test_a_relay_that_lost_its_lease_never_overwrites_what_the_next_one_archived(
        db: Database, tmp_path: Path) -> None:
    """The lease fences the offset, not the archive: a relay whose lease went (its connection
    dropped while it wrote a segment, a long pause) may still write after the next holder,
    which started from the same manifest. Before, its segment and entry replaced the next
    holder's under the same number — changes that holder had archived (its offset moved past
    them, pruning may have taken them from the database) were gone from the archive. Now an
    entry is created, never replaced, and a segment with an entry is never overwritten: the
    stale relay fails and starts again from the manifest."""
    store = LocalStore(tmp_path / "archive")
    await _load(db, 4)
    changes = await all_changes(db)
    stale, live = (ArchiveSink(store, ArchiveIndex(db), batch_size=8, linger_s=0.0) for _ in range(2))
    assert await stale.start() is None and await live.start() is None
    await live.deliver(changes[:6], None)
    # The live relay wrote segment 2's data but not yet its entry: the stale one's write lands
    # in between (its segment under a name of its own), and whichever entry comes first stands.
    await store.put("segments/000000000002.jsonl.gz", encode_segment(changes[6:]))
    with pytest.raises(ArchiveProblem, match="already"):
        await stale.deliver(changes[:4], None)
    assert [c.id for c in await ArchiveReader(store).segment(await ArchiveReader(store).entry_for(1))] == \
        [c.id for c in changes[:6]]
    assert await stale.start() is not None  # it starts again from the manifest, after segment 1
    await stale.deliver(changes[6:], None)
    with pytest.raises(ArchiveProblem, match="already"):
        await live.deliver(changes[6:], None)
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok and report.archived == len(changes) and report.duplicates == 0, report.text()


def _paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


async def test_relay_and_audit_commands(db: Database, fresh_database_url: str, tmp_path: Path) -> None:
    ids = await _load(db, 3)
    env = {"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_ARCHIVE_SEGMENT_MAX_CHANGES": "4",
           "PAYGATE_RELAY_POLL_INTERVAL_S": "0.02"}
    r = _paygate("relay", "--once", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["delivered"]["archive"] == 6
    r = _paygate("audit", "verify", env=env)
    assert r.returncode == 0 and "OK: every change ever captured" in r.stdout, r.stdout + r.stderr
    r = _paygate("audit", "show", ids[1], env=env)
    assert r.returncode == 0 and "#1" in r.stdout and "status=canceled" in r.stdout, r.stdout + r.stderr
    shown = json.loads(_paygate("audit", "show", ids[1], "--archive", "--json", env=env).stdout)
    assert [(e["sequence"], e["data"]["status"]) for e in shown["data"]] == [(1, "created"), (2, "canceled")]

    segment = tmp_path / "archive" / "segments" / "000000000001.jsonl.gz"
    segment.write_bytes(segment.read_bytes()[:-4] + b"\0\0\0\0")
    r = _paygate("audit", "verify", "--json", env=env)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert not report["ok"] and report["missingCount"] == 4 and "checksum mismatch" in report["problems"][0]
    r = _paygate("audit", "show", "pi_doesnotexist0000000000", env=env)
    assert r.returncode == 2 and "no history" in r.stderr


def test_sigv4_matches_the_aws_reference_example() -> None:
    # "GET Object" from the AWS Signature Version 4 documentation for S3.
    headers = {"host": "examplebucket.s3.amazonaws.com", "range": "bytes=0-9",
               "x-amz-content-sha256": hashlib.sha256(b"").hexdigest(), "x-amz-date": "20130524T000000Z"}
    auth = sign_v4("GET", "/test.txt", {}, headers, headers["x-amz-content-sha256"],
                   access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   region="us-east-1", amz_date="20130524T000000Z")
    assert auth.endswith("Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in auth


async def test_archive_in_an_s3_compatible_bucket(db: Database, moto_s3: str) -> None:
    import boto3  # comes with moto

    creds = {"aws_access_key_id": "AKIDTEST", "aws_secret_access_key": "secret-test"}
    s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1", **creds)
    bucket = f"paygate-audit-{uuid.uuid4().hex[:12]}"  # moto keeps buckets for the whole process
    s3.create_bucket(Bucket=bucket)
    settings = Settings(archive_s3_bucket=bucket, archive_s3_endpoint=moto_s3, archive_s3_prefix="prod",
                        archive_s3_access_key=creds["aws_access_key_id"],
                        archive_s3_secret_key=creds["aws_secret_access_key"])
    store = S3Store.from_settings(settings)
    try:
        await _load(db, 5)
        await _archive(db, store, batch=3)
        report = await verify_archive(db, ArchiveReader(store))
        assert report.ok and report.segments == 4 and report.pending == 0, report.text()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="prod/")["Contents"]]
        assert "prod/manifest/000000000001.json" in keys and "prod/segments/000000000004.jsonl.gz" in keys
        assert_exactly_once_in_order(await _archived(store), await all_changes(db))

        # A conditional PUT never replaces a key (a stale relay's entry or segment).
        first = await store.get("manifest/000000000002.json")
        with pytest.raises(ObjectExists):
            await store.put_new("manifest/000000000002.json", b"{}")
        assert await store.get("manifest/000000000002.json") == first
        await store.put_new("scratch/fresh.json", b"{}")
        assert await store.get("scratch/fresh.json") == b"{}"

        s3.put_object(Bucket=bucket, Key="prod/segments/000000000003.jsonl.gz", Body=b"tampered")
        report = await verify_archive(db, ArchiveReader(store))
        assert not report.ok and any("checksum mismatch" in p for p in report.problems)
    finally:
        await store.close()
