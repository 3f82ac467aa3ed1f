"""Pruning as it runs for real: ``paygate history prune`` as a process (killed with SIGKILL
at a crash point, --dry-run, --json, one-line errors), the gateway's scheduled pruning, and
migration 0006 on a database filled by the code before it. Both databases.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from paygate_server.cdc.archive import ArchiveReader
from paygate_server.storage import Database, create_database, upgrade
from paygate_server.storage.changes import Change
from paygate_server.storage.history_prune import HistoryPruneStore
from tests.server.cdc.conftest import all_changes, new_intent, new_merchant, touch
from tests.server.cdc.prune_support import archive, count, write_changes
from tests.support.app import TEST_MASTER_KEY, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.databases import another_database
from tests.support.eventually import eventually


async def paygate(url: str, tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "paygate_server", *args,
        env={**os.environ, "PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(tmp_path),
             "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_ARCHIVE_DIR": str(tmp_path / "archive"),
             "PAYGATE_HISTORY_RETENTION_S": "0", **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def everything_somewhere(db: Database, store: Any, before: list[Change]) -> list[Change]:
    """Every change is in the database or the archive (equal to what it was), none in
    neither; returns what the database still holds."""
    kept = {c.id: c for c in await all_changes(db)}
    copies = {c.id: c async for c in ArchiveReader(store).changes()}
    for change in before:
        assert change.id in kept or change.id in copies, f"change {change.id} is in neither"
        assert (kept.get(change.id) or copies[change.id]).same_content(change)
    return list(kept.values())


@pytest.mark.parametrize("point", ["prune_before_commit", "prune_after_commit"])
async def test_sigkill_during_pruning_loses_nothing(pdb: Database, small_url: str, store: Any, tmp_path: Path,
                                                     point: str) -> None:
    await write_changes(pdb, 15)  # 60 changes: several batches of 8 (SQLite), three partitions (PostgreSQL)
    await archive(pdb, store, tmp_path)
    before = await all_changes(pdb)

    code, out, err = await paygate(small_url, tmp_path, "history", "prune", "--json",
                                   PAYGATE_FAULT_POINT=point, PAYGATE_HISTORY_PRUNE_BATCH_ROWS="8")
    assert code == -9, (code, out, err)
    kept = await everything_somewhere(pdb, store, before)
    state = await HistoryPruneStore(pdb).state()
    assert await count(pdb, "SELECT through_id FROM change_log_prune") == 0  # the guard is closed
    if point == "prune_before_commit":
        assert len(kept) == len(before) and state.pruned_through == 0  # the killed transaction rolled back
    else:
        assert 0 < state.pruned_through < before[-1].id and len(kept) < len(before)
    assert all(c.id > state.pruned_through for c in kept)
    with pytest.raises(Exception, match="append-only"):
        async with pdb.write() as conn:
            await conn.execute(text("DELETE FROM change_log"))

    code, out, err = await paygate(small_url, tmp_path, "history", "prune", "--json",
                                   PAYGATE_HISTORY_PRUNE_BATCH_ROWS="8")
    assert code == 0, err
    report = json.loads(out)
    assert report["prunedThrough"] >= (59 if not pdb.is_sqlite else before[-1].id)
    kept = await everything_somewhere(pdb, store, before)
    assert all(c.id > report["prunedThrough"] for c in kept)


async def test_cli_dry_run_json_and_text(pdb: Database, small_url: str, store: Any, tmp_path: Path) -> None:
    await write_changes(pdb, 12)
    await archive(pdb, store, tmp_path)
    before = await all_changes(pdb)
    code, out, err = await paygate(small_url, tmp_path, "history", "prune", "--dry-run", "--json")
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dryRun"] and dry["rows"] > 0 and dry["idRange"][0] == before[0].id
    assert await all_changes(pdb) == before
    code, out, err = await paygate(small_url, tmp_path, "history", "prune")
    assert code == 0, err
    assert out.startswith(f"deleted {dry['rows']} change-log rows (ids {dry['idRange'][0]}..{dry['idRange'][1]})")
    assert "bound: id" in out


async def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'paygate.db'}"
    code, out, err = await paygate(missing, tmp_path, "history", "prune")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    code, out, err = await paygate(missing, tmp_path, "history", "prune", "--bogus")
    assert code == 2


async def test_forget_consumer(pdb: Database, small_url: str, tmp_path: Path) -> None:
    async with pdb.write() as conn:
        await conn.execute(text("INSERT INTO cdc_offsets (consumer, horizon, last_id, delivered, updated_at)"
                                " VALUES ('old-broker', 0, 0, 0, 0)"))
    code, out, _ = await paygate(small_url, tmp_path, "history", "forget-consumer", "old-broker", "--json")
    assert (code, json.loads(out)) == (0, {"forgotten": "old-broker"})
    code, _, err = await paygate(small_url, tmp_path, "history", "forget-consumer", "old-broker")
    assert code == 2 and "no relay consumer named old-broker" in err


async def test_the_gateway_prunes_on_a_schedule(small_url: str, tmp_path: Path) -> None:
    """Relay and pruning in the gateway: what it captures is archived, then leaves the database."""
    settings = gateway_settings(small_url, tmp_path, run_background=True, history_retention_s=0,
                             history_prune_interval_s=0.1, archive_linger_s=0.0, archive_segment_max_changes=8,
                             reconcile_sweep_interval_s=60.0)
    async with running_gateway(settings) as gw:
        db = gw.gateway.db
        await write_changes(db, 15)
        before = await all_changes(db)

        async def pruned() -> int:
            return (await HistoryPruneStore(db).state()).pruned_through

        # SQLite prunes everything; PostgreSQL whole partitions (through id 59 of 60).
        await eventually(pruned, until=lambda p: p >= (before[-1].id if db.is_sqlite else 59),
                         what="the scheduled pruning")
        await everything_somewhere(db, gw.gateway.archive_store, before)


@pytest.fixture
def unmigrated_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with another_database(database_url, tmp_path, migrated=False) as url:
        yield url


async def test_0006_moves_a_database_of_the_old_code_without_losing_a_row(unmigrated_url: str) -> None:
    """A database at 0005 with history written by the old triggers: 0006 keeps every row
    (same ids, same content), PostgreSQL's change log is partitioned, and capture goes on
    with each intent's sequence."""
    db = create_database(unmigrated_url)
    try:
        await upgrade(db, "0005")
        merchant = await new_merchant(db)
        intents = []
        for _ in range(5):
            async with db.write() as conn:
                pid = await new_intent(conn, merchant)
                await touch(conn, pid, "in_progress")
            intents.append(pid)
        before = await all_changes(db)
        await upgrade(db)
        after = await all_changes(db)
        assert len(after) == len(before) and all(a.same_content(b) and a.txid == b.txid
                                                 for a, b in zip(after, before, strict=True))
        if not db.is_sqlite:
            async with db.read() as conn:
                kind = (await conn.execute(text("SELECT relkind::text FROM pg_class WHERE relname = 'change_log'"))
                        ).scalar_one()
            assert kind == "p"
            partitions, has_default = await HistoryPruneStore(db).partitions()
            assert has_default and partitions[0].lo == 0 and partitions[-1].hi > before[-1].id
        async with db.write() as conn:
            await touch(conn, intents[0], "succeeded")
        last = (await all_changes(db))[-1]
        assert (last.id, last.intent_id, last.intent_seq) == (before[-1].id + 1, intents[0], 3)
    finally:
        await db.dispose()


async def test_0011_numbers_on_from_each_intents_newest_change_or_floor(unmigrated_url: str) -> None:
    """A database at 0010 with history (and an intent whose every change was pruned, known
    only by its floor): 0011 gives each intent a head at its newest change, numbering goes
    on from it, and on PostgreSQL each new change names its predecessor's txid."""
    db = create_database(unmigrated_url)
    try:
        await upgrade(db, "0010")
        merchant = await new_merchant(db)
        intents = []
        for touches in range(3):
            async with db.write() as conn:
                pid = await new_intent(conn, merchant)
                for _ in range(touches):
                    await touch(conn, pid)
            intents.append(pid)
        async with db.write() as conn:
            await conn.execute(text("INSERT INTO change_log_floor (intent_id, last_seq) VALUES ('pi_pruned', 7)"))
        before = await all_changes(db)
        await upgrade(db)
        async with db.read() as conn:
            heads = {r[0]: (r[1], r[2]) for r in await conn.execute(
                text("SELECT intent_id, last_seq, last_txid FROM change_log_heads"))}
        newest = {c.intent_id: (c.intent_seq, c.txid) for c in before}  # ids follow each intent's seq
        assert heads == {**newest, "pi_pruned": (7, None)}
        async with db.write() as conn:
            await touch(conn, intents[2], "succeeded")
        async with db.read() as conn:
            last = (await conn.execute(text(
                "SELECT intent_id, intent_seq, prev_txid FROM change_log ORDER BY id DESC LIMIT 1"))).one()
        assert tuple(last) == (intents[2], 3 + 1, newest[intents[2]][1])
    finally:
        await db.dispose()


async def test_forget_consumer_refuses_a_configured_consumer(pdb: Database, small_url: str, tmp_path: Path) -> None:
    # Before: `forget-consumer webhooks` (or archive, or a configured broker) deleted the
    # offset of a consumer the relay runs: pruning stopped waiting for it — changes it had
    # not delivered could leave the database (webhook events never made) — and the running
    # relay's offset writes then matched no row, silently.
    async with pdb.write() as conn:
        for name in ("archive", "webhooks", "broker"):
            await conn.execute(text("INSERT INTO cdc_offsets (consumer, horizon, last_id, delivered, updated_at)"
                                    " VALUES (:n, 0, 0, 0, 0)"), {"n": name})
    for name, env in (("archive", {}), ("webhooks", {}), ("broker", {"PAYGATE_BROKER_URL": "nats://127.0.0.1:4222"})):
        code, out, err = await paygate(small_url, tmp_path, "history", "forget-consumer", name, **env)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
        assert f"relay consumer {name} is configured" in err
    async with pdb.read() as conn:
        kept = {r[0] for r in await conn.execute(text("SELECT consumer FROM cdc_offsets"))}
    assert kept == {"archive", "webhooks", "broker"}
    # A broker no longer configured is what the command is for.
    code, out, _ = await paygate(small_url, tmp_path, "history", "forget-consumer", "broker", "--json")
    assert (code, json.loads(out)) == (0, {"forgotten": "broker"})


async def test_forget_consumer_refuses_a_consumer_a_relay_runs(pdb: Database, small_url: str, tmp_path: Path) -> None:
    # A broker the gateway is configured with, the command's environment not (no
    # PAYGATE_BROKER_URL there): its lease, held by the running relay, says it runs.
    from paygate_server.storage.relay_leases import ConsumerLease

    async with pdb.write() as conn:
        await conn.execute(text("INSERT INTO cdc_offsets (consumer, horizon, last_id, delivered, updated_at)"
                                " VALUES ('broker', 0, 0, 0, 0)"))
    lease = ConsumerLease(pdb, "broker")
    assert await lease.acquire()
    try:
        code, out, err = await paygate(small_url, tmp_path, "history", "forget-consumer", "broker")
    finally:
        await lease.release()
    assert code == 2 and out == "" and "a relay holds its lease" in err and len(err.strip().splitlines()) == 1, err
    async with pdb.read() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM cdc_offsets WHERE consumer = 'broker'"))).scalar() == 1
