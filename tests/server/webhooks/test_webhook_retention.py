"""Webhook retention as the gateway runs it: one window for the pruning and for a disabled
endpoint's kept events, events with no delivery ever found by the scan, and
``paygate webhooks prune [--dry-run] [--json]`` (docs/operations.md, "Webhooks")."""
from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from paygate_server.cdc.relay import Relay
from paygate_server.cli import main
from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from paygate_server.webhooks import consumer_for
from paygate_server.webhooks.model import create_endpoint
from paygate_server.webhooks.retention import prune, prune_forever
from tests.server.cdc.conftest import db, new_intent, new_merchant, touch  # noqa: F401 (fixture)
from tests.server.test_cli_errors import assert_one_line, paygate
from tests.support.app import TEST_MASTER_KEY, running_gateway, use_cli_env
from tests.support.app import test_settings as gateway_settings
from tests.support.databases import opened_database
from tests.support.eventually import eventually

DAY_S = 86_400
DAY = DAY_S * 1_000_000
FAST = {"relay_poll_interval_s": 0.01, "relay_lease_retry_s": 0.02}


class _Dispatcher:
    def wake(self) -> None:
        pass


async def _disabled_days_ago(database: Database, merchant: str, days: int) -> str:
    async with database.write() as conn:
        endpoint, _ = await create_endpoint(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), merchant,
                                            f"http://off{days}.test/", None)
        await conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint.id)
                           .values(status="disabled", updated_at=now_us() - days * DAY))
    return endpoint.id


async def test_a_disabled_endpoint_gets_its_events_for_the_retention_the_gateway_prunes_with(
        db: Database) -> None:  # noqa: F811
    """One window: an endpoint disabled by a 410 gets (failed) deliveries, for a replay, as long
    as a failed delivery is kept — PAYGATE_WEBHOOK_RETENTION_S, here 10 days, not 30."""
    shop = await new_merchant(db)
    within, past = await _disabled_days_ago(db, shop, 9), await _disabled_days_ago(db, shop, 11)
    async with db.write() as conn:
        await new_intent(conn, shop)
    settings = Settings(webhook_retention_s=10 * DAY_S, **FAST)
    await Relay(db, settings, [consumer_for(settings, _Dispatcher())]).drain()  # type: ignore[arg-type]
    async with db.read() as conn:
        got = {(r.endpoint_id, r.status, r.last_error) for r in await conn.execute(select(webhook_deliveries))}
    assert got == {(within, "failed", "endpoint disabled")}
    assert past  # disabled 11 days ago: past the window, no row


async def test_events_no_endpoint_ever_took_go_by_the_scan_but_each_objects_latest(db: Database) -> None:  # noqa: F811
    shop = await new_merchant(db)  # no webhook endpoint: its events have no delivery
    async with db.write() as conn:
        intent = await new_intent(conn, shop)
    async with db.write() as conn:
        await touch(conn, intent, "canceled")
    settings = Settings(webhook_prune_batch_rows=1, **FAST)
    await Relay(db, settings, [consumer_for(settings, _Dispatcher())]).drain()  # type: ignore[arg-type]
    async with db.read() as conn:
        assert len((await conn.execute(select(webhook_events))).all()) == 2
    assert (await prune(db, settings)).events == 0  # young
    done = await prune(db, settings, now_us() + settings.webhook_retention_s * 1_000_000 + DAY)
    assert done.events == 1
    async with db.read() as conn:
        assert [r.type for r in await conn.execute(select(webhook_events))] == ["payment_intent.canceled"]


async def _delivered_long_ago(database: Database) -> None:
    """A payment created then canceled, its two events delivered to one endpoint 31 days ago."""
    shop = await new_merchant(database)
    async with database.write() as conn:
        await create_endpoint(conn, MasterKey(bytes.fromhex(TEST_MASTER_KEY)), shop, "http://a.test/", None)
        intent = await new_intent(conn, shop)
    async with database.write() as conn:
        await touch(conn, intent, "canceled")
    settings = Settings(**FAST)
    await Relay(database, settings, [consumer_for(settings, _Dispatcher())]).drain()  # type: ignore[arg-type]
    long_ago = now_us() - 31 * DAY
    async with database.write() as conn:
        await conn.execute(update(webhook_deliveries).values(status="delivered", updated_at=long_ago,
                                                             next_attempt_at=long_ago))
        await conn.execute(update(webhook_events).values(created_at=long_ago))


@pytest.fixture
def fresh_operator_env(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield use_cli_env(monkeypatch, fresh_database_url, tmp_path)


async def test_the_prune_command_counts_then_deletes(fresh_operator_env: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    async with opened_database(fresh_operator_env) as database:
        await _delivered_long_ago(database)

    def run(*args: str) -> dict[str, object]:
        assert main(["webhooks", "prune", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    loop = asyncio.get_running_loop()  # the command runs its own event loop: off this test's
    assert await loop.run_in_executor(None, run, "--dry-run") == {
        "deliveries": 2, "events": 0, "dryRun": True, "retentionS": 30 * DAY_S}
    assert await loop.run_in_executor(None, run) == {
        "deliveries": 2, "events": 1, "dryRun": False, "retentionS": 30 * DAY_S}
    assert await loop.run_in_executor(None, run, "--dry-run") == {
        "deliveries": 0, "events": 0, "dryRun": True, "retentionS": 30 * DAY_S}


@pytest.mark.parametrize("raw", ["30d", "3600"])
def test_the_prune_command_refuses_a_malformed_retention_in_one_line(raw: str, tmp_path: Path) -> None:
    r = paygate("webhooks", "prune", env={"PAYGATE_WEBHOOK_RETENTION_S": raw, "PAYGATE_DATA_DIR": str(tmp_path)})
    assert assert_one_line(r, "PAYGATE_WEBHOOK_RETENTION_S: ")


async def test_the_gateways_background_work_prunes_on_its_schedule(fresh_database_url: str, tmp_path: Path) -> None:
    """``paygate serve``'s background work runs the retention pass every
    PAYGATE_WEBHOOK_PRUNE_INTERVAL_S; 0 runs none (the operator's command does)."""
    async with opened_database(fresh_database_url) as database:
        await _delivered_long_ago(database)

        async def deliveries() -> int:
            async with database.read() as conn:
                return len((await conn.execute(select(webhook_deliveries))).all())

        # An interval of 0: the background task ends at once, having pruned nothing.
        await asyncio.wait_for(prune_forever(database, Settings(webhook_prune_interval_s=0)), timeout=5)
        assert await deliveries() == 2
        every = gateway_settings(fresh_database_url, tmp_path / "every", run_background=True,
                                 webhook_prune_interval_s=0.05, webhook_poll_interval_s=60.0, **FAST)
        async with running_gateway(every):
            await eventually(deliveries, until=lambda n: n == 0, timeout=20, what="the background pruning")
