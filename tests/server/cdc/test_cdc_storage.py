"""The change history's storage operations (``paygate_server.storage``) on both databases: plain change-log reads, the
drain target, relay offsets under a lease, and what a position covers."""
from __future__ import annotations

import pytest

from paygate_server.storage import Database
from paygate_server.storage.change_log import ChangeLog
from paygate_server.storage.changes import START, Position
from paygate_server.storage.relay_leases import ConsumerLease
from paygate_server.storage.relay_offsets import read_offset
from tests.server.cdc.conftest import all_changes, new_intent, new_merchant, touch


async def test_change_log_pages_by_id_and_reads_one_intent_in_sequence(db: Database) -> None:
    merchant = await new_merchant(db)
    async with db.write() as conn:
        first = await new_intent(conn, merchant)
        second = await new_intent(conn, merchant)
        await touch(conn, first, "canceled")
    expected = await all_changes(db)
    log = ChangeLog(db)
    page = await log.after(0, 2)
    rest = await log.after(page[-1].id, 2)
    assert [c.id for c in page + rest] == [c.id for c in expected]
    assert await log.after(rest[-1].id, 2) == []
    assert all(a.same_content(b) for a, b in zip(page + rest, expected, strict=True))
    assert [c.intent_seq for c in await log.of_intent(first)] == [1, 2]
    assert [c.entity_id for c in await log.of_intent(second)] == [second]
    assert await log.of_intent("pi_none") == []


async def test_drain_target_is_none_on_sqlite(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite: reading to the last id is exact")
    assert await ChangeLog(db).drain_target() is None


async def test_drain_target_is_passed_by_every_later_transaction(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL transaction ids")
    target = await ChangeLog(db).drain_target()
    merchant = await new_merchant(db)
    async with db.write() as conn:
        await new_intent(conn, merchant)
    txids = [c.txid for c in await all_changes(db)]
    assert target is not None and txids and all(t is not None and t >= target for t in txids)


async def test_offsets_start_at_the_beginning_and_move_under_the_lease(db: Database) -> None:
    assert await read_offset(db, "store-test") == START
    lease = ConsumerLease(db, "store-test")
    assert await lease.acquire()
    try:
        assert await lease.start_offset() == START
        await lease.save_offset(Position(5, 9, 3), 3)
        async with lease.write() as tx:
            await lease.save_offset(Position(9, None, 0), 2, tx)
        assert await lease.start_offset() == Position(9, None, 0)  # an existing offset is kept
    finally:
        await lease.release()
    assert await read_offset(db, "store-test") == Position(9, None, 0)


def test_a_position_covers_what_a_relay_there_has_delivered() -> None:
    sqlite = Position(0, None, 10)
    assert sqlite.covers(10, None) and not sqlite.covers(11, None)
    window = Position(100, 120, 50)  # txids below 100 done; inside [100, 120) ids up to 50
    assert window.covers(99, 99) and window.covers(50, 110)
    assert not window.covers(51, 110) and not window.covers(1, 120)
    closed = Position(120, None, 0)
    assert closed.covers(51, 119) and not closed.covers(1, 120)
