"""How big the change log grows per payment, with and without pruning (docs/perf/change-log-size.md).

Makes N complete payments (create → process, approved) through the in-process gateway
against a real simulator process, lets the relay deliver them to every consumer and the
folder archive, reads the change log's size (``HistoryPruneStore.size``: SQLite ``dbstat``
pages, PostgreSQL ``pg_total_relation_size`` of every partition), prunes with a retention
of 0 (everything delivered and archived may go), and reads it again, with the time the run
took. Prints one JSON line.

    PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/history_size.py sqlite:////tmp/h.db 2000
    PARTITION_IDS=2000 PAYGATE_TEST_DATABASE_URL=postgresql://127.0.0.1:5432/test \
      PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/history_size.py postgresql 2000

The database is a new one on the backend named (PostgreSQL: a fresh database on
``PAYGATE_TEST_DATABASE_URL``'s server). ``PARTITION_IDS`` shrinks PostgreSQL's change-log
partitions (1,000,000 ids by default) so that a short run fills some and pruning drops them.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import paygate
from paygate_server.cdc.prune import HistoryPruner
from paygate_server.simulator.testing import start_simulator
from paygate_server.storage import change_log_partitions
from paygate_server.storage.history_prune import HistoryPruneStore
from tests.support.app import running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.databases import drop_database, migrate, new_database_url


async def measure(url: str, payments: int, folder: Path, simulator: str) -> dict[str, object]:
    settings = gateway_settings(url, folder, processor_url=simulator, archive_linger_s=0.0)
    async with running_gateway(settings) as gw:
        shop = await gw.new_merchant()
        jwks = gw.gateway.card_keys.jwks()
        for i in range(payments):
            pid = (await shop.create_intent(amount=1000 + i % 500))["paymentIntentId"]
            jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
            r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                            "paymentDetails": {"encryptedCard": jwe}})
            assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        await gw.gateway.relay.drain()
        sizes = HistoryPruneStore(gw.gateway.db)
        before = await sizes.size()
        pruner = HistoryPruner(gw.gateway.db, gw.gateway.archive_store,
                               dataclasses.replace(gw.gateway.settings, history_retention_s=0))
        started = time.perf_counter()
        report = await pruner.run()
        took = time.perf_counter() - started
        after = await sizes.size()
    return {"database": url.split(":")[0], "payments": payments, "rowsBefore": before.rows,
            "bytesBefore": before.bytes, "bytesPerPayment": round(before.bytes / payments),
            "rowsPruned": report.rows, "partitionsDropped": len(report.partitions_dropped),
            "pruneSeconds": round(took, 3), "rowsAfter": after.rows, "bytesAfter": after.bytes,
            "archiveSegmentBytes": sum(p.stat().st_size for p in (folder / "archive" / "segments").iterdir()),
            "archiveIndexObjects": sum(1 for p in (folder / "archive" / "index").rglob("*") if p.is_file())}


def main() -> None:
    backend, payments = sys.argv[1], int(sys.argv[2])
    if "PARTITION_IDS" in os.environ:
        change_log_partitions.PARTITION_IDS = int(os.environ["PARTITION_IDS"])
    with tempfile.TemporaryDirectory() as tmp, start_simulator(Path(tmp) / "sim") as simulator:
        url = new_database_url("sqlite" if backend.startswith("sqlite") else "postgresql", Path(tmp))
        migrate(url)
        try:
            print(json.dumps(asyncio.run(measure(url, payments, Path(tmp), simulator))))
        finally:
            drop_database(url)


if __name__ == "__main__":
    main()
