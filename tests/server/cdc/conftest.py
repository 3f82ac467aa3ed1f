"""Helpers for the change-history tests: a database per test, a recording consumer, writers."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from paygate_server.cdc.relay import Consumer
from paygate_server.cdc.store import LocalStore
from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.intents.schemas import CreateIntent
from paygate_server.intents.service import new_intent as new_intent_row
from paygate_server.merchants import create_merchant
from paygate_server.storage import Database
from paygate_server.storage import change_log_partitions as parts
from paygate_server.storage.changes import Change, Position
from paygate_server.storage.payments import INSERT_INTENT
from paygate_server.storage.schema import change_log, payment_intents
from paygate_server.storage.statements import execute
from tests.support.app import TEST_MASTER_KEY
from tests.support.databases import another_database, migrate, opened_database

PRUNE_PARTITION_IDS = 20  # ids per change-log partition in the pruning tests (PostgreSQL)


@dataclass
class ListSink(Consumer):
    """A relay consumer that records what it receives."""

    name: str = "test"
    batch_size: int = 7
    linger_s: float = 0.0
    transactional: bool = False
    received: list[Change] = field(default_factory=list)

    async def start(self) -> Position | None:
        return None

    async def deliver(self, changes: list[Change], conn: AsyncConnection | None) -> None:
        self.received.extend(changes)

    async def close(self) -> None:
        return None


@pytest.fixture
def moto_s3() -> Iterator[str]:
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def db(fresh_database_url: str) -> AsyncIterator[Database]:
    async with opened_database(fresh_database_url) as database:
        yield database


async def new_merchant(db: Database) -> str:
    async with db.write() as conn:
        pair = await create_merchant(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), name="Shop", origins=[])
    return pair.merchant_id


async def new_intent(conn: AsyncConnection, merchant_id: str, amount: int = 1000) -> str:
    row, _ = new_intent_row(merchant_id, CreateIntent(amount, "USD", {"sku": "x"}, None, {}))
    await execute(conn, INSERT_INTENT, **row)
    return str(row["id"])


async def touch(conn: AsyncConnection, intent_id: str, status: str | None = None) -> None:
    values: dict[str, object] = {"version": payment_intents.c.version + 1, "updated_at": now_us()}
    if status is not None:
        values["status"] = status
    await conn.execute(update(payment_intents).where(payment_intents.c.id == intent_id).values(**values))


async def all_changes(db: Database) -> list[Change]:
    async with db.read() as conn:
        # The columns a Change holds, named: a database at an older revision lacks later ones.
        columns = [change_log.c[f.name] for f in fields(Change) if f.name in change_log.c]
        return [Change(**r._mapping) for r in await conn.execute(select(*columns).order_by(change_log.c.id))]


def assert_exactly_once_in_order(received: list[Change], expected: list[Change], *, dedupe: bool = False) -> None:
    """Every change once (after dedup by id when asked) and per-intent sequences only go up."""
    seen: dict[int, Change] = {}
    last: dict[str, int] = {}
    for change in received:
        if change.id in seen:
            assert dedupe, f"change {change.id} delivered twice"
            continue
        seen[change.id] = change
        assert change.intent_seq > last.get(change.intent_id, 0), (
            f"intent {change.intent_id}: seq {change.intent_seq} after {last.get(change.intent_id)}")
        last[change.intent_id] = change.intent_seq
    assert sorted(seen) == sorted(c.id for c in expected), (
        f"missing {sorted(set(c.id for c in expected) - set(seen))[:10]}, "
        f"extra {sorted(set(seen) - set(c.id for c in expected))[:10]}")
    for c in expected:
        assert seen[c.id].same_content(c)


# The history-pruning tests (test_history_prune*.py, helpers in prune_support.py): a database
# of its own migrated with small change-log partitions (PostgreSQL), and a folder archive.
@pytest.fixture
def small_url(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(parts, "PARTITION_IDS", PRUNE_PARTITION_IDS)
    with another_database(database_url, tmp_path, migrated=False) as url:
        migrate(url)  # run here, with the small partitions: a copy of the template has the usual ones
        yield url


@pytest.fixture
async def pdb(small_url: str) -> AsyncIterator[Database]:
    async with opened_database(small_url) as db:
        yield db


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "archive")
