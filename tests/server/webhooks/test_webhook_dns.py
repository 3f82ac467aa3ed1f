"""A webhook host whose DNS never answers (SPEC §6): the system resolver blocks a thread per
look-up, so the look-ups must not take the threads the rest of the gateway needs.

The resolver here is the real ``socket.getaddrinfo`` with one name made to hang, as
glibc's does while a name's nameserver drops the queries: pointing this process's resolver at
a DNS server of the test's needs root and a network namespace of its own."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from paygate_server.storage.schema_history import webhook_deliveries
from tests.server.webhooks.receiver import Receiver
from tests.server.webhooks.test_webhook_delivery import endpoint, make_gateway  # noqa: F401 (fixture)
from tests.support.eventually import eventually

BLACKHOLE = "blackhole.hooks.test"
HUNG_DELIVERIES = 40  # more than the default executor's threads on any machine (at most 32)


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Any:
    real = socket.getaddrinfo
    release = threading.Event()
    state: dict[str, Any] = {"hang": False, "blocked": 0, "release": release}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == BLACKHOLE:
            if state["hang"]:
                state["blocked"] += 1
                release.wait(20)
            return real("127.0.0.1", port, *args, **kwargs)  # before the hang: resolves
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield state
    release.set()  # the blocked threads end with the test


async def test_a_host_whose_dns_hangs_delays_no_other_endpoint(make_gateway: Any, hanging_dns: Any) -> None:  # noqa: F811
    async with make_gateway(webhook_timeout_s=1.5, webhook_endpoint_concurrency=HUNG_DELIVERIES,
                            webhook_max_concurrency=64, webhook_retry_schedule_s=(60.0,)) as live:
        try:
            await _check(live, hanging_dns)
        finally:
            hanging_dns["release"].set()  # before the gateway stops: its shutdown may need a thread


async def _check(live: Any, hanging_dns: Any) -> None:
    """A merchant's deliveries hang in DNS; everything else goes on."""
    stuck_shop, shop = await live.new_merchant(), await live.new_merchant()
    async with Receiver() as receiver:
        stuck = await endpoint(stuck_shop, f"http://{BLACKHOLE}:{receiver.port}/hook",
                               events=["payment_intent.created"])
        hanging_dns["hang"] = True
        for _ in range(HUNG_DELIVERIES):
            await stuck_shop.create_intent()

        async def attempted() -> int:
            async with live.gateway.db.read() as conn:
                return (await conn.execute(select(func.count()).select_from(webhook_deliveries).where(
                    webhook_deliveries.c.endpoint_id == stuck["webhookEndpointId"],
                    webhook_deliveries.c.attempts == 1))).scalar_one()

        await eventually(attempted, until=lambda n: n == HUNG_DELIVERIES, timeout=15.0,
                         what="every delivery to the hanging host attempted (and timed out)")
        assert receiver.requests == []
        # The rest of the gateway still has its threads (the archive, the console's hashing) ...
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "free"), 2.0) == "free"
        # ... and another merchant's endpoint, by name, is delivered to at once.
        await endpoint(shop, f"http://localhost:{receiver.port}/hook", events=["payment_intent.created"])
        started = time.monotonic()
        await shop.create_intent()
        await eventually(lambda: len(receiver.delivered_ids()) == 1, timeout=5.0, what="the other endpoint")
        assert time.monotonic() - started < 5.0
        assert hanging_dns["blocked"] == 1  # one look-up of the name at a time, not one per attempt
