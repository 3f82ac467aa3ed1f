"""The must-show of issue #19: payments are made, archived and pruned round after round, on
SQLite and PostgreSQL (small change-log partitions), through the gateway and a real
processor simulator. Afterwards:

- the database's change log is bounded by the retention window — it holds only the last
  round's changes (PostgreSQL: rounded up to whole partitions) — while the archive grows;
- every intent's history (``GET …/history``) is identical before and after pruning;
- ``audit verify`` passes over all time, pruned or not;
- deleting one archived segment makes ``audit verify`` fail and name that segment.
"""
from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import paygate
from paygate_server.cdc.archive import ArchiveReader
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.index import segments_of
from paygate_server.cdc.prune import HistoryPruner
from paygate_server.clock import now_us
from paygate_server.simulator.testing import start_simulator
from paygate_server.storage import change_log_partitions as parts
from paygate_server.storage.archive_index import ArchiveIndex
from tests.server.cdc.conftest import PRUNE_PARTITION_IDS
from tests.server.cdc.prune_support import count
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.pruning import forget_index
from tests.support.signing import SignedClient

ROUNDS = 4
PAYMENTS = 5  # per round; 5 changes each (intent created, in_progress, attempt, settled ×2)


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(tmp_path_factory.mktemp("simulator")) as url:
        yield url


@pytest.fixture
async def gw(small_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[InProcessGateway]:
    # Small segments: an intent's changes span several, as they do under load.
    settings = gateway_settings(small_url, tmp_path, processor_url=simulator_url, archive_linger_s=0.0,
                                archive_segment_max_changes=3)
    async with running_gateway(settings) as g:
        yield g


async def _round(gw: InProcessGateway, shop: SignedClient) -> list[str]:
    ids = []
    for i in range(PAYMENTS):
        pid = (await shop.create_intent(amount=1000 + i))["paymentIntentId"]
        jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242", exp_month=12,
                                   exp_year=2034, cvc="123")
        r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                        "paymentDetails": {"encryptedCard": jwe}})
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        ids.append(pid)
    return ids


async def _histories(shop: SignedClient, intents: list[str]) -> dict[str, Any]:
    out = {}
    for pid in intents:
        r = await shop.get(f"/api/v1/payment/intent/{pid}/history")
        assert r.status_code == 200, r.text
        out[pid] = r.json()["data"]
    return out


async def test_the_history_leaves_the_database_and_stays_whole(gw: InProcessGateway, tmp_path: Path) -> None:
    assert parts.PARTITION_IDS == PRUNE_PARTITION_IDS
    db, settings = gw.gateway.db, gw.gateway.settings
    store = gw.gateway.archive_store
    shop = await gw.new_merchant()
    intents: list[str] = []
    before: dict[str, Any] = {}
    in_database: list[int] = []
    in_archive: list[int] = []
    for _ in range(ROUNDS):
        round_started = now_us()
        new = await _round(gw, shop)
        intents += new
        before.update(await _histories(shop, new))  # each intent's history while wholly in the database
        await gw.gateway.relay.drain()  # to every consumer, the archive included
        # Retention = this round's age: everything older than the round may go, nothing of it.
        window_s = (now_us() - round_started) // 1_000_000 + 1
        pruner = HistoryPruner(db, store, dataclasses.replace(settings, history_retention_s=window_s))
        report = await pruner.run(now=round_started + window_s * 1_000_000)
        assert report.archive_problem is None, report.text()
        kept = await count(db)
        archived = len([c async for c in ArchiveReader(store).changes()])
        in_database.append(kept)
        in_archive.append(archived)
        round_changes = await count(db, f"SELECT count(*) FROM change_log WHERE created_at >= {round_started}")
        # Bounded by the window: the last round's changes, plus at most one partition's worth
        # that a partial partition keeps (PostgreSQL drops whole partitions only).
        slack = PRUNE_PARTITION_IDS if not db.is_sqlite else 0
        assert round_changes <= kept <= round_changes + slack, (kept, round_changes, report.text())
    print(f"\nchange-log rows after each round's pruning: {in_database}; archived: {in_archive}")
    # The archive grew every round; the database did not.
    assert in_archive == sorted(in_archive) and in_archive[-1] >= ROUNDS * PAYMENTS * 5, in_archive
    assert max(in_database) <= PAYMENTS * 5 + (PRUNE_PARTITION_IDS if not db.is_sqlite else 0), in_database
    assert in_database[-1] < in_archive[-1]
    # The first rounds' intents have left the database entirely; their histories have not changed.
    first = intents[:PAYMENTS]
    assert await count(db, "SELECT count(*) FROM change_log WHERE intent_id IN ("
                       + ", ".join(f"'{p}'" for p in first) + ")") == 0
    assert await _histories(shop, intents) == before
    report = await verify_archive(db, ArchiveReader(store))
    assert report.ok, report.text()
    assert report.archive_only > 0  # some of what it proved lives only in the archive now

    # A wholly pruned intent whose last archived part the index no longer finds: an error,
    # never a history that merely ends early.
    pid = first[0]
    *_, last = await segments_of(ArchiveIndex(db), pid)
    await forget_index(db, "intent_id = :pid AND segment = :n", pid=pid, n=last.segment)
    r = await shop.get(f"/api/v1/payment/intent/{pid}/history")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error", r.text

    # One archived segment deleted: verify fails and names it.
    victim = "segments/000000000001.jsonl.gz"
    (tmp_path / "archive" / victim).unlink()
    report = await verify_archive(db, ArchiveReader(store))
    assert not report.ok
    assert any(victim in problem for problem in report.problems), report.text()
