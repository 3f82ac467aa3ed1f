"""Fixtures and helpers of the history-pruning tests (test_history_prune*.py)."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from paygate_server.cdc.archive import ArchiveReader, ArchiveSink
from paygate_server.cdc.relay import Relay
from paygate_server.cdc.store import LocalStore
from paygate_server.config import Settings
from paygate_server.storage import Database
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.changes import Change
from tests.server.cdc.conftest import PRUNE_PARTITION_IDS, new_intent, new_merchant, touch

__all__ = ["WIDTH", "SEGMENT", "settings", "write_changes", "archive", "archived", "count"]

WIDTH = PRUNE_PARTITION_IDS  # ids per partition in these tests (PostgreSQL)
SEGMENT = 8  # changes per archive segment


def settings(tmp_path: Path, retention_s: int = 0) -> Settings:
    return Settings(data_dir=tmp_path, history_retention_s=retention_s)


async def write_changes(db: Database, intents: int, touches: int = 3) -> list[str]:
    merchant = await new_merchant(db)
    ids = []
    for _ in range(intents):
        async with db.write() as conn:
            pid = await new_intent(conn, merchant)
        for _ in range(touches):
            async with db.write() as conn:
                await touch(conn, pid)
        ids.append(pid)
    return ids


async def archive(db: Database, store: LocalStore, tmp_path: Path) -> None:
    await Relay(db, settings(tmp_path), [ArchiveSink(store, ArchiveIndex(db), batch_size=SEGMENT, linger_s=0.0)]).drain()


async def archived(store: LocalStore) -> dict[int, Change]:
    return {c.id: c async for c in ArchiveReader(store).changes()}


async def count(db: Database, sql: str = "SELECT count(*) FROM change_log") -> int:
    async with db.read() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


