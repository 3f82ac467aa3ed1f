"""PostgreSQL: a payment's updates of its intent are in place (HOT), migration 0015.

PostgreSQL updates a row in place, without a new entry in each of its indexes, only if no
column an index names (key, INCLUDE or predicate) changed and the new version fits on the
page. The payment path changes an intent's status twice per payment; these tests hold the
schema to that (no index of the intent names a column an automatic payment changes, the
hot tables keep room on their pages), and show the updates of a real payment being HOT."""
from __future__ import annotations

import re

import pytest

from paygate_server.storage.schema import SQLITE_ONLY_INDEXES
from paygate_server.storage.statements import Sql, fetch_all, fetch_one
from tests.server.storage.payment_store_helpers import Shop
from tests.support.app import InProcessGateway
from tests.support.eventually import eventually

# What begin-attempt and settle write on an intent of an automatic payment (payments.py,
# START_PROCESSING and SETTLE_PROCESSING); amount_capturable stays 0 there.
_CHANGED_BY_A_PAYMENT = ("status", "card", "last_error", "version", "updated_at", "failed_attempts",
                         "amount_received")
_INDEXES = Sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payment_intents'")
_OPTIONS = Sql("SELECT relname, reloptions FROM pg_class WHERE relname IN ('payment_intents', 'idempotency_keys')"
               " ORDER BY relname")
_UPDATES = Sql("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'payment_intents'")


@pytest.fixture(autouse=True)
def _postgresql_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("HOT updates and fillfactor are PostgreSQL's")


async def test_no_index_of_an_intent_names_a_column_a_payment_changes(gw: InProcessGateway) -> None:
    async with gw.gateway.db.read_one() as conn:
        indexes = {row["indexname"]: row["indexdef"] for row in await fetch_all(conn, _INDEXES)}
    assert "ix_payment_intents_held" in indexes and "ix_payment_intents_created" in indexes
    assert not SQLITE_ONLY_INDEXES & set(indexes)
    for name, definition in indexes.items():
        named = set(re.findall(r"[a-z_]+", definition.split(" USING ", 1)[1]))
        assert not named & set(_CHANGED_BY_A_PAYMENT), (name, definition)


async def test_the_hot_tables_leave_room_on_their_pages(gw: InProcessGateway) -> None:
    async with gw.gateway.db.read_one() as conn:
        options = {row["relname"]: row["reloptions"] for row in await fetch_all(conn, _OPTIONS)}
    assert options == {"idempotency_keys": ["fillfactor=90"], "payment_intents": ["fillfactor=90"]}


async def test_a_payments_updates_of_its_intent_are_hot(lone: Shop) -> None:
    """On a database of its own, so the counters are this payment's: begin-attempt and settle
    update the intent twice, both in place. (The counters reach pg_stat_user_tables when the
    backends that wrote them next report, hence the polling.)"""
    await lone.paid()

    async def updates() -> tuple[int, int]:
        async with lone.gw.gateway.db.read_one() as conn:
            row = await fetch_one(conn, _UPDATES)
        assert row is not None
        return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])

    assert await eventually(updates, until=lambda counts: counts[0] >= 2) == (2, 2)
