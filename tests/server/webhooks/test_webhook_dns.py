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

from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.storage.schema_history import webhook_deliveries
from paygate_server.webhooks import endpoints as webhook_endpoints
from paygate_server.webhooks.dispatcher import Dispatcher
from paygate_server.webhooks.model import new_secret
from tests.server.webhooks.receiver import Receiver
from tests.server.webhooks.test_webhook_delivery import endpoint, make_gateway  # noqa: F401 (fixture)
from tests.support.eventually import eventually

BLACKHOLE = "blackhole.hooks.test"
HUNG_DELIVERIES = 40  # more than the default executor's threads on any machine (at most 32)
HUNG_REGISTRATIONS = 24  # more than the look-up threads deliveries have


def _name(host: Any) -> Any:
    return host.decode() if isinstance(host, bytes) else host  # anyio asks with the IDNA-encoded bytes


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch) -> Any:
    real = socket.getaddrinfo
    release = threading.Event()
    state: dict[str, Any] = {"hang": False, "blocked": 0, "release": release}
    # (a name under BLACKHOLE hangs too: registrations of names never seen before)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if _name(host) == BLACKHOLE or str(_name(host)).endswith("." + BLACKHOLE):
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


async def test_the_connection_goes_to_the_address_checked_not_a_second_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding at connect time: the name answers a public address to the guard's
    look-up and loopback to any later one. The delivery connects to the checked address
    (anyio is handed the literal, which resolves to itself without DNS): the loopback
    receiver never hears from it, and the name is looked up once."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if _name(host) == "rebind.hooks.test":
            asked.append(_name(host))
            return real("93.184.216.34" if len(asked) == 1 else "127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = Settings.from_env({"PAYGATE_WEBHOOK_TIMEOUT_S": "1"})  # private addresses refused
    dispatcher = Dispatcher(None, MasterKey(bytes(32)), settings)  # type: ignore[arg-type]  # attempt() alone: no queue
    try:
        async with Receiver() as receiver:
            result = await dispatcher.attempt(f"http://rebind.hooks.test:{receiver.port}/hook", new_secret(),
                                              "evt_rebind", b"{}")
            assert result.status_code is None and result.error  # no way out of this sandbox to the public address
            assert receiver.requests == [] and asked == ["rebind.hooks.test"]
            asked.clear()
            asked.append("the first answer was given")  # from now on the name answers loopback ...
            refused = await dispatcher.attempt(f"http://rebind.hooks.test:{receiver.port}/hook", new_secret(),
                                               "evt_rebind", b"{}")
            assert refused.error is not None and "not public" in refused.error  # ... which the guard refuses
            assert receiver.requests == []
    finally:
        await dispatcher.close()


async def test_registrations_of_hanging_names_delay_no_delivery(make_gateway: Any, hanging_dns: Any) -> None:  # noqa: F811
    """A merchant registering names whose DNS hangs, many at once (each a name never looked
    up before), holds threads of registration's own: deliveries still resolve at once."""
    async with make_gateway(webhook_timeout_s=3.0) as live:
        try:
            await _register_while_delivering(live, hanging_dns)
        finally:
            hanging_dns["release"].set()


async def _register_while_delivering(live: Any, hanging_dns: Any) -> None:
    stuck_shop, shop = await live.new_merchant(), await live.new_merchant()
    async with Receiver() as receiver:
        await endpoint(shop, f"http://localhost:{receiver.port}/hook", events=["payment_intent.created"])
        hanging_dns["hang"] = True
        registering = [asyncio.create_task(stuck_shop.post(
            "/api/v1/webhooks", {"url": f"https://n{i}.{BLACKHOLE}/hook"})) for i in range(HUNG_REGISTRATIONS)]
        try:
            await eventually(lambda: hanging_dns["blocked"], until=lambda n: n >= 16, timeout=10.0,
                             what="registrations' look-ups hanging")
            await shop.create_intent()
            await eventually(lambda: len(receiver.delivered_ids()) == 1, timeout=5.0, what="the delivery by name")
            assert not any(task.done() for task in registering)  # still waiting for their DNS
        finally:
            hanging_dns["release"].set()
            await asyncio.gather(*registering, return_exceptions=True)


async def test_a_registration_whose_host_never_resolves_is_refused_in_bounded_time(
        make_gateway: Any, hanging_dns: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Not held until the system resolver gives up (tens of seconds; here, until released)."""
    monkeypatch.setattr(webhook_endpoints, "REGISTRATION_LOOKUP_S", 0.5)
    async with make_gateway() as live:
        try:
            shop = await live.new_merchant()
            hanging_dns["hang"] = True
            started = time.monotonic()
            answer = await shop.post("/api/v1/webhooks", {"url": f"http://never.{BLACKHOLE}/hook"})
            assert time.monotonic() - started < 5, "held past the look-up's bound"
            error = answer.json()["error"]
            assert (answer.status_code, error["code"], error["param"]) == (400, "parameter_invalid", "url"), answer.text
            assert "did not resolve within 0.5 s" in error["message"]
        finally:
            hanging_dns["release"].set()
