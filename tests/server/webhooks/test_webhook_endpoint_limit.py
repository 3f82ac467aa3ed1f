"""``PAYGATE_WEBHOOK_ENDPOINT_CONCURRENCY`` holds for the whole gateway: two real ``paygate
serve`` processes on one database, limit 2, a slow endpoint with a backlog — never more
than 2 of its deliveries at the receiver at once (each process alone would send 2), and
every one delivered in the end; and a slot held by a process that died mid-attempt is free
once its lease runs out (tests/server/storage/test_webhook_store.py has the same with the
clock in hand)."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from sqlalchemy import update

from paygate_server.storage.schema_history import webhook_deliveries
from tests.server.webhooks.receiver import Received, Receiver
from tests.server.webhooks.test_webhook_crash import rows
from tests.server.webhooks.test_webhook_delivery import FAST, endpoint
from tests.support.app import running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.eventually import eventually
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import SignedClient

LIMIT = 2
DELIVERIES = 12
ANSWER_AFTER_S = 0.3  # the endpoint's slowness: 3 of the dispatchers' polls
ENV = {"PAYGATE_WEBHOOK_ALLOW_PRIVATE": "1", "PAYGATE_WEBHOOK_ENDPOINT_CONCURRENCY": str(LIMIT),
       "PAYGATE_WEBHOOK_POLL_INTERVAL_S": "0.1", "PAYGATE_RELAY_POLL_INTERVAL_S": "0.05",
       "PAYGATE_WEBHOOK_TIMEOUT_S": "5"}


class SlowEndpoint:
    """Answers ``200`` after a while, counting the requests it holds at once."""

    def __init__(self) -> None:
        self.holding = 0
        self.most = 0

    async def __call__(self, _: Received) -> tuple[int, dict[str, str]]:
        self.holding += 1
        self.most = max(self.most, self.holding)
        try:
            await asyncio.sleep(ANSWER_AFTER_S)
        finally:
            self.holding -= 1
        return 200, {}


def test_two_gateways_together_keep_to_an_endpoints_limit(database_url: str, tmp_path: Path) -> None:
    creds = make_merchant(database_url)  # (runs a loop of its own)
    slow = SlowEndpoint()

    async def run() -> None:
        async with Receiver(slow) as receiver:
            with start_gateway(database_url, tmp_path, name="one", **ENV) as one, \
                    start_gateway(database_url, tmp_path, name="two", **ENV):
                async with httpx.AsyncClient(base_url=one.base_url) as http:
                    shop = SignedClient(http, creds)
                    r = await shop.post("/api/v1/webhooks",
                                        {"url": receiver.url(), "events": ["payment_intent.created"]})
                    assert r.status_code == 201, r.text
                    for _ in range(DELIVERIES):
                        await shop.create_intent()
                done = await eventually(lambda: rows(database_url, creds.merchant_id),
                                        until=lambda rs: len(rs) == DELIVERIES and {r.status for r in rs} == {"delivered"},
                                        timeout=30.0, what="every delivery made")
            assert slow.most == LIMIT  # reached, never passed
            assert len(receiver.delivered_ids()) == DELIVERIES and len(receiver.requests) == DELIVERIES
            assert {(r.attempts, r.lease_until) for r in done} == {(1, None)}  # every slot given back

    asyncio.run(run())


async def test_a_dead_processs_lease_holds_its_slot_until_it_runs_out(database_url: str, tmp_path: Path) -> None:
    arrived: dict[str, float] = {}  # webhook-id: wall-clock time (the leases' clock)

    async def note(request: Received) -> tuple[int, dict[str, str]]:
        arrived[request.webhook_id] = time.time()
        return 200, {}

    settings = gateway_settings(database_url, tmp_path, **{**FAST, "webhook_endpoint_concurrency": 1})
    async with running_gateway(settings) as live, Receiver(note) as receiver:
        shop = await live.new_merchant()
        await endpoint(shop, receiver.url(), events=["payment_intent.created"])
        await shop.create_intent()
        [first] = await eventually(lambda: list(arrived), until=lambda ids: len(ids) == 1, what="the first delivery")
        # As a process that claimed it again and died mid-attempt leaves it: pending, its
        # lease running for another 1.5 s — the endpoint's one slot, taken.
        lease_ends = time.time() + 1.5
        async with live.gateway.db.write() as conn:
            await conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.event_id == first).values(
                status="pending", next_attempt_at=int(lease_ends * 1e6), lease_until=int(lease_ends * 1e6)))
        await shop.create_intent()
        await eventually(lambda: [status for _, status in receiver.answers], until=lambda a: a == [200] * 3,
                         what="the new delivery, and the dead process's again")
        [second] = set(arrived) - {first}
        assert arrived[second] >= lease_ends  # not before the slot was free
