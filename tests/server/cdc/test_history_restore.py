"""The database restored from a backup older than its archive, end to end (docs/operations.md,
"Backups and restore"; docs/history.md, "After a restore").

Payments, archived; a backup (SQLite's backup API, or pg_dump); more payments, archived; the
backup restored into a new database, sequences, heads and relay offsets included. Before
``paygate history resume-after-restore`` the gateway and the relay refuse (before, the relay
adopted the archive's position and shipped the restored database's next changes under the ids
the archive already held: "6 changes differ between the archive and the database", and an
intent's sequence 3 twice). After it, new changes go on after the archive's ids and sequences,
the relay ships them to the same archive, and ``audit verify`` passes, reporting what the
restore lost."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paygate_server.cdc.archive import ArchiveAhead, ArchiveReader, ArchiveSink
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.prune import HistoryPruner
from paygate_server.cdc.relay import ConsumerStats, Relay
from paygate_server.cdc.restore import ResumeRefused, archive_ahead, resume_after_restore
from paygate_server.cdc.store import LocalStore
from paygate_server.cdc.timeline import archived_timeline, whole_timeline
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.changes import Change
from paygate_server.storage.history_restores import RestoreStore
from paygate_server.storage.relay_offsets import save_offset
from tests.server.cdc.conftest import ListSink, all_changes, new_intent, new_merchant, touch
from tests.server.cdc.restore_support import backup, restored
from tests.server.cdc.test_cdc_archive import FAST, _archive, _load
from tests.support.app import TEST_MASTER_KEY, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.databases import opened_database
from tests.support.eventually import eventually

ROOT = Path(__file__).resolve().parents[3]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``paygate …`` as the operator runs it: its own process, the worktree's code."""
    path = os.pathsep.join(str(ROOT / p) for p in ("server", "sdk", "checkout", "."))
    full = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")} | env | {"PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env=full, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("paygate: ") and words in result.stderr, result.stderr


async def _archived(store: LocalStore) -> list[Change]:
    return [c async for c in ArchiveReader(store).changes()]


async def _before_the_failure(db: Database, url: str, tmp_path: Path, store: LocalStore) -> tuple[Path, list[str]]:
    """Payments archived, a backup, then more payments archived (on intents the backup has and
    on new ones): the backup and the intents it has."""
    intents = await _load(db, 4)
    await _archive(db, store)
    saved = backup(url, tmp_path)
    async with db.write() as conn:
        await touch(conn, intents[0], "in_progress")
    async with db.write() as conn:
        await touch(conn, intents[0])
        await touch(conn, intents[1], "canceled")
    await _load(db, 2)
    await _archive(db, store)
    return saved, intents


async def test_a_restore_under_a_newer_archive_is_refused_then_resumed(fresh_database_url: str,
                                                                       tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive")
    async with opened_database(fresh_database_url) as old:
        saved, intents = await _before_the_failure(old, fresh_database_url, tmp_path, store)
        kept_by_backup = {c.id for c in await all_changes(old)}
    archived = await _archived(store)
    async with restored(saved, fresh_database_url, tmp_path) as url, opened_database(url) as db:
        backed_up = {c.id for c in await all_changes(db)}
        lost = sorted(c.id for c in archived if c.id not in backed_up)
        assert lost and kept_by_backup > backed_up
        env = {"PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(tmp_path / "data"),
               "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_ARCHIVE_DIR": str(tmp_path / "archive"),
               "PAYGATE_PROCESSOR_URL": "http://127.0.0.1:9", "PAYGATE_RELAY_POLL_INTERVAL_S": "0.05"}

        # Before the command: nothing runs on, nothing is written to the archive.
        manifest = sorted((tmp_path / "archive" / "manifest").iterdir())
        assert isinstance(await archive_ahead(db, store), ArchiveAhead)
        with pytest.raises(ArchiveAhead, match="resume-after-restore"):
            await _archive(db, store)
        _refused(_cli(env, "serve", "--port", "0"), "run `paygate history resume-after-restore`")
        _refused(_cli(env, "relay", "--once"), "restored from a backup older than the archive")
        assert sorted((tmp_path / "archive" / "manifest").iterdir()) == manifest

        done = _cli(env, "history", "resume-after-restore", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["lost"] | {"recordedAt": None} == {
            "recordedAt": None, "firstId": lost[0], "lastId": lost[-1], "changes": len(lost), "intents": 4,
            "archiveSegment": len(manifest), "resumedAfterId": max(c.id for c in archived)}, report
        _refused(_cli(env, "history", "resume-after-restore"), "nothing to resume after")

        # New payments: on the intent the restore set back, on one it did not touch, a new one.
        merchant = await new_merchant(db)
        async with db.write() as conn:
            await touch(conn, intents[0], "canceled")
            await touch(conn, intents[2])
            fresh = await new_intent(conn, merchant)
        new = [c for c in await all_changes(db) if c.id not in backed_up]
        assert min(c.id for c in new) == max(c.id for c in archived) + 1
        archived_seq = max(c.intent_seq for c in archived if c.intent_id == intents[0])
        assert [c.intent_seq for c in new if c.intent_id == intents[0]] == [archived_seq + 1]

        await _archive(db, store)  # the relay ships again, to the same archive
        verified = await verify_archive(db, ArchiveReader(store))
        assert verified.ok, verified.text()
        assert verified.restore_lost == [len(lost)] and not verified.not_in_database, verified.text()
        assert f"{len(lost)} changes (ids {lost[0]}–{lost[-1]}), in the archive only" in verified.text()
        assert verified.to_json()["lostInRestores"][0]["inArchive"] == len(lost)
        assert _cli(env, "audit", "verify").returncode == 0

        # The intent touched on both sides: one history, the lost changes where they happened.
        timeline = await whole_timeline(db, intents[0], store)
        assert [c.intent_seq for c in timeline] == list(range(1, archived_seq + 2))
        assert [c.id for c in timeline if c.id in lost] == [c.id for c in archived
                                                          if c.intent_id == intents[0] and c.id in lost]
        from_archive = await archived_timeline(db, store, intents[0])
        assert [(c.id, c.intent_seq) for c in from_archive] == [(c.id, c.intent_seq) for c in timeline]
        shown = _cli(env, "audit", "show", intents[0], "--archive")
        assert shown.returncode == 0 and f"{archived_seq + 1} changes" in shown.stdout, shown.stderr
        assert [c.intent_seq for c in await whole_timeline(db, fresh, store)] == [1]

        # The gateway on the resumed database: an intent created through the API is numbered
        # and archived after the archive's changes, and its history answers.
        settings = gateway_settings(url, tmp_path / "gateway", archive_dir=tmp_path / "archive")
        async with running_gateway(settings) as gw:
            shop = await gw.new_merchant()
            pid = (await shop.create_intent(1234))["paymentIntentId"]
            await gw.gateway.relay.drain()
            history = await shop.get(f"/api/v1/payment/intent/{pid}/history")
            assert history.status_code == 200 and [e["sequence"] for e in history.json()["data"]] == [1], history.text
        assert min(c.id for c in await all_changes(db) if c.intent_id == pid) > max(c.id for c in archived)
        assert (await verify_archive(db, ArchiveReader(store))).ok

        # Pruning goes on past the restore (on PostgreSQL only whole partitions go: none here).
        pruned = await HistoryPruner(db, store, Settings(history_retention_s=0)).run(now=now_us() + 1_000_000)
        assert pruned.archive_problem is None and (pruned.rows > 0 or not db.is_sqlite), pruned.to_json()
        after = await verify_archive(db, ArchiveReader(store))
        assert after.ok and after.restore_lost == [len(lost)] and after.archive_only == pruned.rows, after.text()
        timeline = await whole_timeline(db, intents[0], store)
        assert [c.intent_seq for c in timeline] == list(range(1, archived_seq + 2))


async def test_a_running_relay_stops_shipping_with_one_line_until_the_command_runs(
        fresh_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The relay inside a gateway (``run_forever``): the archive consumer refuses in one log
    line, logged once however often it asks again, and ships nothing; the others go on."""
    store = LocalStore(tmp_path / "archive")
    async with opened_database(fresh_database_url) as old:
        saved, _ = await _before_the_failure(old, fresh_database_url, tmp_path, store)
    manifest = sorted((tmp_path / "archive" / "manifest").iterdir())
    async with restored(saved, fresh_database_url, tmp_path) as url, opened_database(url) as db:
        other = ListSink(name="other")
        relay = Relay(db, FAST, [ArchiveSink(store, ArchiveIndex(db), batch_size=4, linger_s=0.0), other])
        task = asyncio.ensure_future(relay.run_forever())
        try:
            await asyncio.wait_for(relay.stats.setdefault("other", ConsumerStats()).caught_up.wait(), 30)
            stopped = relay.stats.setdefault("archive", ConsumerStats())
            await eventually(lambda: stopped.refused >= 3, timeout=30, what="the relay asking again")  # still one line
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    lines = [r for r in caplog.records if r.name == "paygate.cdc" and r.levelname == "ERROR"]
    assert len(lines) == 1 and "paygate history resume-after-restore" in lines[0].getMessage(), lines
    assert lines[0].exc_info is None
    assert relay.stats["archive"].delivered == 0 and other.received
    assert sorted((tmp_path / "archive" / "manifest").iterdir()) == manifest


async def test_changes_written_under_the_archives_ids_before_the_command_are_refused(
        fresh_database_url: str, tmp_path: Path) -> None:
    """A writer that is not refused (``paygate reconcile``, the console) captured a change on
    the restored database before the command: it holds an id the archive holds with other
    content. Neither can be rewritten, so the command refuses in one line, changing nothing."""
    store = LocalStore(tmp_path / "archive")
    async with opened_database(fresh_database_url) as old:
        saved, intents = await _before_the_failure(old, fresh_database_url, tmp_path, store)
    async with restored(saved, fresh_database_url, tmp_path) as url, opened_database(url) as db:
        async with db.write() as conn:
            await touch(conn, intents[3], "canceled")
        with pytest.raises(ResumeRefused, match="under ids the archive holds with other content") as refused:
            await resume_after_restore(db, store)
        assert "\n" not in str(refused.value)
        assert await RestoreStore(db).records() == []
        assert isinstance(await archive_ahead(db, store), ArchiveAhead)  # still refused


async def test_an_offset_the_relay_took_from_the_archive_after_the_restore_is_not_trusted(
        fresh_database_url: str, tmp_path: Path) -> None:
    """Started after the restore with the code before the refusal, the relay took the archive's
    own position as its offset (the position of changes this database never had). The
    command does not read it as "delivered up to here": it finds every lost change."""
    store = LocalStore(tmp_path / "archive")
    async with opened_database(fresh_database_url) as old:
        saved, _ = await _before_the_failure(old, fresh_database_url, tmp_path, store)
    archived = await _archived(store)
    reader = ArchiveReader(store)
    newest = await reader.entry((await reader.entry_names())[-1])
    async with restored(saved, fresh_database_url, tmp_path) as url, opened_database(url) as db:
        backed_up = {c.id for c in await all_changes(db)}
        async with db.write() as conn:
            await save_offset(conn, "archive", newest.position, 0)
        report = await resume_after_restore(db, store)
        assert report.record.changes == len([c for c in archived if c.id not in backed_up]) > 0
