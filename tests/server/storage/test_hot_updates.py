"""PostgreSQL: the intent's indexes and the hot tables' room on their pages (migration 0015).

PostgreSQL updates a row in place, without a new entry in each of its indexes (HOT), only if
no column an index names (key, INCLUDE or predicate) changed and the new version fits on the
page. A payment changes its intent's status twice: the status index (kept, for the lists by
status) names it, and nothing else may — the holds' index is by the held amount, which an
automatic payment never changes; and the hot tables keep room on their pages for the
updates that can be HOT (a refund's, an idempotency key's answer)."""
from __future__ import annotations

import re

import pytest

from paygate_server.storage.statements import Sql, fetch_all
from tests.support.app import InProcessGateway

# What begin-attempt and settle write on an intent of an automatic payment (payments.py,
# START_PROCESSING and SETTLE_PROCESSING); amount_capturable stays 0 there.
_CHANGED_BY_A_PAYMENT = ("status", "card", "last_error", "version", "updated_at", "failed_attempts",
                         "amount_received")
_INDEXES = Sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'payment_intents'")
_OPTIONS = Sql("SELECT relname, reloptions FROM pg_class WHERE relname IN ('payment_intents', 'idempotency_keys')"
               " ORDER BY relname")


@pytest.fixture(autouse=True)
def _postgresql_only(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("HOT updates and fillfactor are PostgreSQL's")


async def test_only_the_status_index_names_a_column_a_payment_changes(gw: InProcessGateway) -> None:
    async with gw.gateway.db.read_one() as conn:
        indexes = {row["indexname"]: row["indexdef"] for row in await fetch_all(conn, _INDEXES)}
    assert "ix_payment_intents_held" in indexes and "ix_payment_intents_created" in indexes
    naming = {name for name, definition in indexes.items()
              if set(re.findall(r"[a-z_]+", definition.split(" USING ", 1)[1])) & set(_CHANGED_BY_A_PAYMENT)}
    assert naming == {"ix_payment_intents_status_created"}, indexes


async def test_the_hot_tables_leave_room_on_their_pages(gw: InProcessGateway) -> None:
    async with gw.gateway.db.read_one() as conn:
        options = {row["relname"]: row["reloptions"] for row in await fetch_all(conn, _OPTIONS)}
    assert options == {"idempotency_keys": ["fillfactor=90"], "payment_intents": ["fillfactor=90"]}
