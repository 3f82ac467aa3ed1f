"""SIGKILL the relay mid-batch, again and again, while changes keep coming; afterwards the
archive, the NATS stream and the webhook events hold every change exactly once (after
deduplication by change id) and every intent's sequence only goes up.

The relay runs as ``paygate relay`` (a real process). Some rounds it kills itself at a named
point inside a delivery (``PAYGATE_FAULT_POINT``: after a sink wrote but before the offset
moved, between a segment and its manifest entry, halfway through a broker batch); the
others are killed from outside at a random moment once it is delivering.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from paygate_server.cdc.archive import ArchiveReader
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.store import LocalStore
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database, create_database
from paygate_server.storage.changes import Change
from paygate_server.storage.schema import change_log
from paygate_server.storage.schema_history import cdc_offsets, webhook_deliveries, webhook_events
from paygate_server.webhooks.model import create_endpoint
from tests.server.cdc.conftest import (
    all_changes,
    assert_exactly_once_in_order,
    new_intent,
    new_merchant,
    touch,
)
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually
from tests.support.slow_set import is_slow_run

# Only `paygate relay` processes: no HTTP requests to log (tests/e2e/conftest.py).
SERVES_REQUESTS = False

# A round's fault point, in turn; None: killed from outside at a random moment. The first
# four rounds meet every fault point once and an outside kill (every run); the slow set
# (tests/support/slow_set.py) runs all six. PAYGATE_RELAY_CRASH_ROUNDS overrides both.
FAULTS = ["relay_after_deliver", None, "archive_after_segment", "broker_mid_batch", None, None]
ROUNDS, SLOW_ROUNDS = 4, len(FAULTS)
NATS_URL = os.environ.get("PAYGATE_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _nats_up() -> bool:
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=1).close()
        return True
    except OSError:
        return False


async def _load(db: Database, merchant: str, stop: asyncio.Event, rng: random.Random) -> None:
    """Intents through their life: created, in_progress, failed/retried, final."""
    while not stop.is_set():
        async with db.write() as conn:
            pid = await new_intent(conn, merchant, amount=rng.randint(100, 9999))
        for status in rng.choice([("in_progress", "succeeded"), ("canceled",),
                                  ("in_progress", "failed", "in_progress", "succeeded"), ("in_progress",)]):
            async with db.write() as conn:
                await touch(conn, pid, status)
        await asyncio.sleep(0.005)  # pacing the load, not waiting for anything


async def _delivered_by_live(db: Database, proc: asyncio.subprocess.Process, log: Path) -> int:
    """What the relay delivered so far; it must still be running (else its log says why)."""
    assert proc.returncode is None, log.read_text()[-3000:]
    return await _delivered(db)


async def _delivered(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(select(func.coalesce(func.sum(cdc_offsets.c.delivered), 0)))).scalar_one())


async def _stream_changes(stream: str) -> list[Change]:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = [Change.from_record(orjson.loads((await js.get_msg(stream, seq)).data))
               for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        await js.delete_stream(stream)
        return out
    finally:
        await nc.close()


def _expected_event_changes(changes: list[Change]) -> set[int]:
    last: dict[str, Any] = {}
    out = set()
    for c in sorted(changes, key=lambda c: (c.intent_id, c.intent_seq)):
        if c.entity != "payment_intent":
            continue
        status = c.snapshot()["status"]
        if last.get(c.entity_id) != status:
            out.add(c.id)
        last[c.entity_id] = status
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The round count is a parameter, so the test id says it (``[4-rounds-...]``)."""
    if "rounds" in metafunc.fixturenames:
        rounds = SLOW_ROUNDS if is_slow_run(metafunc.config, {m.name for m in metafunc.definition.iter_markers()}) \
            else ROUNDS
        rounds = int(os.environ.get("PAYGATE_RELAY_CRASH_ROUNDS", rounds))
        metafunc.parametrize("rounds", [rounds], ids=[f"{rounds}-rounds"])


async def _scenario(url: str, tmp_path: Path, use_nats: bool, rounds: int) -> None:
    db = create_database(url)
    rng = random.Random(42)
    tag = uuid.uuid4().hex[:10]
    stream = f"PGT_CRASH_{tag}"
    env = {**os.environ, "PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_ARCHIVE_SEGMENT_MAX_CHANGES": "40",
           "PAYGATE_ARCHIVE_LINGER_S": "0.05", "PAYGATE_RELAY_BATCH_SIZE": "40",
           "PAYGATE_RELAY_POLL_INTERVAL_S": "0.05", "PAYGATE_RELAY_LEASE_RETRY_S": "0.1",
           "PAYGATE_CARD_KEY_BITS": "2048"}
    if use_nats:
        env.update(PAYGATE_BROKER_URL=NATS_URL, PAYGATE_BROKER_STREAM=stream,
                   PAYGATE_BROKER_SUBJECT_PREFIX=f"pgtcrash{tag}.changes")
    try:
        merchant = await new_merchant(db)
        async with db.write() as conn:
            await create_endpoint(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), merchant, "http://h.test/", None)
        stop = asyncio.Event()
        writers = [asyncio.create_task(_load(db, merchant, stop, random.Random(i))) for i in range(3)]
        log = open(tmp_path / "relay.log", "ab")  # noqa: SIM115
        kills = 0
        try:
            for round_ in range(rounds):
                fault = FAULTS[round_ % len(FAULTS)]
                if fault == "broker_mid_batch" and not use_nats:
                    fault = "relay_after_deliver"
                before = await _delivered(db)
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "paygate_server", "relay", "--no-dispatch",
                    env={**env, "PAYGATE_FAULT_POINT": fault or ""}, stdout=log, stderr=log)
                if fault:  # it kills itself at the fault point
                    code = await asyncio.wait_for(proc.wait(), 60)
                    assert code == -signal.SIGKILL, f"round {round_}: relay exited {code} instead of dying at {fault}"
                else:
                    await eventually(lambda proc=proc: _delivered_by_live(db, proc, tmp_path / "relay.log"),
                                     until=lambda n, before=before: n != before, timeout=60,
                                     what="the relay to deliver")
                    await asyncio.sleep(rng.uniform(0, 0.3))  # a random moment mid-stream
                    proc.kill()
                    await proc.wait()
                kills += 1
        finally:
            stop.set()
            await asyncio.gather(*writers)
            log.close()
        assert kills == rounds

        final = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "paygate_server", "relay", "--once", "--no-dispatch", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(final.communicate(), 120)
        assert final.returncode == 0, err.decode()[-3000:]

        expected = await all_changes(db)
        assert len(expected) > 100
        store = LocalStore(tmp_path / "archive")
        report = await verify_archive(db, ArchiveReader(store))
        assert report.ok and report.pending == 0, report.text()
        assert_exactly_once_in_order([c async for c in ArchiveReader(store).changes()], expected, dedupe=True)
        if use_nats:
            assert_exactly_once_in_order(await _stream_changes(stream), expected, dedupe=True)
        async with db.read() as conn:
            event_changes = [r[0] for r in await conn.execute(select(webhook_events.c.change_id))]
            deliveries = (await conn.execute(select(func.count()).select_from(webhook_deliveries))).scalar_one()
            assert (await conn.execute(select(func.count()).select_from(change_log))).scalar_one() == len(expected)
        assert sorted(event_changes) == sorted(_expected_event_changes(expected))
        assert deliveries == len(event_changes)
    finally:
        await db.dispose()


@pytest.mark.slow
def test_sigkill_the_relay_mid_batch_during_load(fresh_database_url: str, tmp_path: Path, rounds: int) -> None:
    asyncio.run(_scenario(fresh_database_url, tmp_path, use_nats=_nats_up(), rounds=rounds))
