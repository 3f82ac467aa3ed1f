"""Webhook delivery end to end in one gateway (relay + dispatcher running), to a real HTTP
receiver on loopback; every delivery is verified with the third-party ``standardwebhooks``."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from paygate_server.clock import now_us
from paygate_server.storage.schema_history import (
    webhook_deliveries,
    webhook_endpoints,
    webhook_events,
)
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from paygate_server.webhooks import guard
from paygate_server.webhooks.dispatcher import ascii_url
from tests.server.webhooks.receiver import Received, Receiver
from tests.support.app import TEST_MASTER_KEY, InProcessGateway, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.eventually import eventually
from tests.support.signing import SignedClient

HOOKS = "/api/v1/webhooks"
FAST = dict(run_background=True, webhook_allow_private=True, webhook_retry_schedule_s=(0.05, 0.1, 0.2, 0.4),
            webhook_poll_interval_s=0.02, relay_poll_interval_s=0.02, relay_lease_retry_s=0.05,
            archive_linger_s=0.05, reconcile_sweep_interval_s=60.0)


@pytest.fixture
def make_gateway(database_url: str, tmp_path: Path) -> Callable[..., Any]:
    def make(**overrides: Any) -> Any:
        return running_gateway(gateway_settings(database_url, tmp_path, **{**FAST, **overrides}))

    return make


@pytest.fixture
async def live(make_gateway: Callable[..., Any]) -> AsyncIterator[InProcessGateway]:
    async with make_gateway() as g:
        yield g


async def endpoint(shop: SignedClient, url: str, **extra: Any) -> dict[str, Any]:
    r = await shop.post(HOOKS, {"url": url, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def deliveries(live: InProcessGateway, endpoint_id: str, status: str) -> list[Any]:
    """The endpoint's delivery rows in ``status``."""
    async with live.gateway.db.read() as conn:
        return list((await conn.execute(select(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == status))).all())


def verified(request: Received, secret: str) -> dict[str, Any]:
    """Verified by the third-party library (raises if the signature is wrong)."""
    return Webhook(secret).verify(request.body, request.headers)


async def test_deliveries_verify_with_standardwebhooks(live: InProcessGateway) -> None:
    shop = await live.new_merchant()
    async with Receiver() as everything, Receiver() as only_canceled:
        hook = await endpoint(shop, everything.url())
        picky = await endpoint(shop, only_canceled.url(), events=["payment_intent.canceled"])
        intent = await shop.create_intent()
        pid = intent["paymentIntentId"]
        assert (await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})).status_code == 200
        await eventually(lambda: len(everything.requests) >= 2 and len(only_canceled.requests) >= 1, what="deliveries")

        payloads = sorted((verified(r, hook["secret"]) for r in everything.requests), key=lambda p: p["timestamp"])
        assert [p["type"] for p in payloads] == ["payment_intent.created", "payment_intent.canceled"]
        assert set(payloads[0]) == {"type", "timestamp", "data"} and payloads[0]["timestamp"].endswith("Z")
        expected = {k: v for k, v in intent.items() if k != "clientSecret"}
        assert payloads[0]["data"] == expected
        assert payloads[1]["data"]["status"] == "canceled" and "clientSecret" not in payloads[1]["data"]
        ids = [r.webhook_id for r in everything.requests]
        assert all(re.fullmatch(r"evt_[a-z2-7]{26,}", i) for i in ids) and len(set(ids)) == 2  # ≥ 128 bits
        request = everything.requests[0]
        assert request.method == "POST" and request.headers["content-type"] == "application/json"
        assert request.headers["webhook-signature"].startswith("v1,")
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60

        [canceled] = only_canceled.requests
        assert verified(canceled, picky["secret"])["type"] == "payment_intent.canceled"
        assert canceled.webhook_id in ids  # one event, the same id to every endpoint
        with pytest.raises(WebhookVerificationError):
            verified(canceled, hook["secret"])  # each endpoint has its own secret


async def test_a_receiver_failing_for_a_while_gets_every_event_with_the_same_id(live: InProcessGateway) -> None:
    shop = await live.new_merchant()
    failures = {"left": 5}

    async def flaky(_: Received) -> tuple[int, dict[str, str]]:
        if failures["left"] > 0:
            failures["left"] -= 1
            return 503, {}
        return 200, {}

    async with Receiver(flaky) as receiver:
        hook = await endpoint(shop, receiver.url())
        pids = [(await shop.create_intent())["paymentIntentId"] for _ in range(2)]
        for pid in pids:
            await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
        async def read_events() -> dict[str, str]:
            async with live.gateway.db.read() as conn:
                return {r.id: r.payload for r in await conn.execute(
                    select(webhook_events.c.id, webhook_events.c.payload).where(
                        webhook_events.c.merchant_id == shop.creds.merchant_id))}

        events = await eventually(read_events, until=lambda e: len(e) >= 4 and receiver.delivered_ids() >= set(e),
                                  what="recovery")

        attempts: dict[str, list[Received]] = {}
        for r in receiver.requests:
            attempts.setdefault(r.webhook_id, []).append(r)
            verified(r, hook["secret"])  # every attempt is signed afresh
        assert set(attempts) == set(events)
        assert sum(len(a) for a in attempts.values()) == 4 + 5  # every event once more per failure
        for event_id, tries in attempts.items():
            assert {t.body for t in tries} == {events[event_id].encode()}  # same id, same body
        async def rows() -> list[Any]:
            async with live.gateway.db.read() as conn:
                return (await conn.execute(select(webhook_deliveries).where(
                    webhook_deliveries.c.merchant_id == shop.creds.merchant_id))).all()

        await eventually(rows, until=lambda rs: {r.status for r in rs} == {"delivered"},  # recorded just after the 200
                         what="every delivery recorded as delivered")
        assert sum(r.attempts for r in await rows()) == 9


async def test_any_2xx_is_delivered_and_nothing_else_is(live: InProcessGateway) -> None:
    """SPEC §6: "any 2xx within 15 s is delivered", not only 200; a 300 (a 3xx with no
    Location to not follow) is retried like any other failure, then marked failed."""
    shop = await live.new_merchant()
    codes = (201, 202, 204, 299, 300)

    def answering(code: int) -> Callable[[Received], Any]:
        async def answer(_: Received) -> tuple[int, dict[str, str]]:
            return code, {}
        return answer

    async with contextlib.AsyncExitStack() as stack:
        receivers = [await stack.enter_async_context(Receiver(answering(code))) for code in codes]
        hooks = [await endpoint(shop, r.url(), events=["payment_intent.created"]) for r in receivers]
        await shop.create_intent()
        rows = {code: await eventually(lambda h=hook, s=status: deliveries(live, h["webhookEndpointId"], s),
                                       what=f"the delivery to the endpoint answering {code} {status}")
                for code, hook, status in zip(codes, hooks, ["delivered"] * 4 + ["failed"], strict=True)}
    assert {code: (row.attempts, row.last_status_code) for code, [row] in rows.items()} == {
        201: (1, 201), 202: (1, 202), 204: (1, 204), 299: (1, 299), 300: (5, 300)}


async def test_410_disables_the_endpoint_and_its_later_events_wait_for_a_replay(live: InProcessGateway) -> None:
    """A disabled endpoint's events are kept, each a delivery failed at once (never sent),
    so that the replay after the merchant mended their receiver sends them: none lost."""
    shop = await live.new_merchant()
    mended = {"yes": False}

    async def gone(_: Received) -> tuple[int, dict[str, str]]:
        return (200, {}) if mended["yes"] else (410, {})

    async with Receiver(gone) as receiver:
        hook = await endpoint(shop, receiver.url())
        await shop.create_intent()

        async def status() -> str:
            return (await shop.get(HOOKS)).json()["data"][0]["status"]

        await eventually(status, until=lambda s: s == "disabled", what="the endpoint disabled")
        assert len(receiver.requests) == 1  # not retried
        listed = (await shop.get(HOOKS)).json()["data"][0]
        assert listed["webhookEndpointId"] == hook["webhookEndpointId"] and "410" in listed["disabledReason"]

        pid = (await shop.create_intent())["paymentIntentId"]

        async def event_exists() -> bool:
            async with live.gateway.db.read() as conn:
                return (await conn.execute(select(webhook_events.c.id).where(
                    webhook_events.c.intent_id == pid))).first() is not None

        await eventually(event_exists, what="the event")
        async with live.gateway.db.read() as conn:
            later = {r[0] for r in await conn.execute(select(webhook_events.c.id).where(
                webhook_events.c.intent_id == pid))}
        assert await deliveries(live, hook["webhookEndpointId"], "pending") == []
        kept = await deliveries(live, hook["webhookEndpointId"], "failed")
        assert {r.event_id for r in kept} >= later
        assert {(r.attempts, r.last_error) for r in kept if r.event_id in later} == {(0, "endpoint disabled")}
        assert len(receiver.requests) == 1  # nothing sent to a disabled endpoint

        mended["yes"] = True
        assert await DeliveryQueue(live.gateway.db).replay_failed(
            now_us(), endpoint_id=hook["webhookEndpointId"]) == len(kept)  # `paygate webhooks replay`
        await eventually(lambda: receiver.delivered_ids() >= later, what="the kept events, replayed")


async def test_failed_deliveries_are_replayed_with_the_same_id(
        live: InProcessGateway, database_url: str, tmp_path: Path) -> None:
    shop = await live.new_merchant()
    healthy = {"ok": False}

    async def down_then_up(_: Received) -> tuple[int, dict[str, str]]:
        return (200, {}) if healthy["ok"] else (500, {})

    async with Receiver(down_then_up) as receiver:
        hook = await endpoint(shop, receiver.url(), events=["payment_intent.created"])
        await shop.create_intent()

        rows = await eventually(lambda: deliveries(live, hook["webhookEndpointId"], "failed"), what="the delivery failed")
        assert rows[0].attempts == 5 and rows[0].last_status_code == 500  # 1 + the 4 retries
        assert len(receiver.requests) == 5

        healthy["ok"] = True
        env = {"PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path),
               "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
        out = subprocess.run([sys.executable, "-m", "paygate_server", "webhooks", "replay", "--endpoint",
                              hook["webhookEndpointId"], "--json"], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and json.loads(out.stdout) == {"replayed": 1}, out.stderr
        await eventually(lambda: receiver.delivered_ids(), what="the replayed delivery")
        assert {r.webhook_id for r in receiver.requests} == receiver.delivered_ids()  # the same id
        verified(receiver.requests[-1], hook["secret"])


async def test_a_slow_endpoint_never_delays_the_others(make_gateway: Callable[..., Any]) -> None:
    release = asyncio.Event()

    async def hang(_: Received) -> tuple[int, dict[str, str]]:
        await release.wait()
        return 200, {}

    async with make_gateway(webhook_timeout_s=8.0, webhook_endpoint_concurrency=2) as live:
        slow_shop, fast_shop = await live.new_merchant(), await live.new_merchant()
        async with Receiver(hang) as slow, Receiver() as fast:
            await endpoint(slow_shop, slow.url())
            await endpoint(fast_shop, fast.url())
            for _ in range(6):
                await slow_shop.create_intent()
            await eventually(lambda: len(slow.requests) >= 2, what="the slow endpoint's first attempts")
            started = time.monotonic()
            for _ in range(4):
                await fast_shop.create_intent()
            await eventually(lambda: len(fast.delivered_ids()) == 4, timeout=6.0, what="the fast endpoint")
            assert time.monotonic() - started < 6.0
            assert len(slow.requests) == 2  # its concurrency bound: the rest wait in the table
            release.set()


async def test_redirects_are_not_followed(live: InProcessGateway) -> None:
    shop = await live.new_merchant()

    async def moved(request: Received) -> tuple[int, dict[str, str]]:
        return 307, {"Location": "/elsewhere"}

    async with Receiver(moved) as receiver:
        hook = await endpoint(shop, receiver.url(), events=["payment_intent.created"])
        await shop.create_intent()
        await eventually(lambda: len(receiver.requests) >= 2, what="a retry")
        assert {r.path for r in receiver.requests} == {"/hook"}
        async with live.gateway.db.read() as conn:
            row = (await conn.execute(select(webhook_deliveries).where(
                webhook_deliveries.c.endpoint_id == hook["webhookEndpointId"]))).one()
        assert row.last_status_code == 307 and row.status in ("pending", "failed")


async def test_a_name_that_later_resolves_to_loopback_is_refused_at_delivery(
        make_gateway: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([["93.184.216.34"]])  # public when the endpoint is created ...

    async def rebinding(host: str, port: int) -> list[str]:
        assert host == "hooks.rebind.test"
        return next(answers, ["127.0.0.1"])  # ... loopback ever after (DNS rebinding)

    monkeypatch.setattr(guard, "resolve_host", rebinding)
    async with make_gateway(webhook_allow_private=False) as live, Receiver() as receiver:
        shop = await live.new_merchant()
        hook = await endpoint(shop, receiver.url(host="hooks.rebind.test"), events=["payment_intent.created"])
        await shop.create_intent()

        async def attempted() -> Any:
            async with live.gateway.db.read() as conn:
                return (await conn.execute(select(webhook_deliveries).where(
                    webhook_deliveries.c.endpoint_id == hook["webhookEndpointId"],
                    webhook_deliveries.c.attempts > 0))).first()

        row = await eventually(attempted, what="a delivery attempt")
        assert "loopback, private or link-local" in row.last_error
        assert receiver.requests == []  # the guard runs before any connection


@pytest.mark.parametrize(("url", "sent"), [
    ("https://hooks.example/a?b=c", "https://hooks.example/a?b=c"),
    ("https://bücher.example/hooks/é?x=ü", "https://xn--bcher-kva.example/hooks/%C3%A9?x=%C3%BC"),
    ("http://[2606:4700::1111]:8443/café", "http://[2606:4700::1111]:8443/caf%C3%A9"),
    ("http://Bücher.Example:8080/%C3%A9/é", "http://xn--bcher-kva.example:8080/%C3%A9/%C3%A9"),
])
def test_ascii_url(url: str, sent: str) -> None:
    assert ascii_url(url) == sent


async def test_a_url_with_non_ascii_characters_is_delivered(
        make_gateway: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # httpcore takes ASCII URLs only: an internationalized host name or a path in UTF-8
    # (accepted at registration, as browsers accept them) is sent in its ASCII form.
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(guard, "resolve_host", resolve)
    async with make_gateway() as live, Receiver() as receiver:
        shop = await live.new_merchant()
        hook = await endpoint(shop, f"http://bücher.hooks.test:{receiver.port}/hooks/café?shop=bücher",
                              events=["payment_intent.created"])
        await shop.create_intent()
        await eventually(lambda: receiver.delivered_ids(), timeout=10.0, what="the delivery")
        [request] = receiver.requests
        assert request.path == "/hooks/caf%C3%A9?shop=b%C3%BCcher"
        assert request.headers["host"] == f"xn--bcher-kva.hooks.test:{receiver.port}"
        # The name the guard checked is the one connected to. (Not necessarily the last
        # look-up: the database is the session's, and this gateway may meanwhile deliver
        # another test's pending events to 127.0.0.1.)
        assert "xn--bcher-kva.hooks.test" in asked
        verified(request, hook["secret"])


async def test_a_delivery_the_gateway_cannot_send_backs_off_and_fails(live: InProcessGateway) -> None:
    """The gateway's own failure (here: an endpoint secret the master key cannot open) is an
    attempt that sent nothing: on the retry schedule, then ``failed`` with the reason, for
    the operator to replay — not a retry every lease, for ever."""
    shop = await live.new_merchant()
    async with Receiver() as receiver:
        hook = await endpoint(shop, receiver.url(), events=["payment_intent.created"])
        async with live.gateway.db.write() as conn:
            await conn.execute(update(webhook_endpoints).where(
                webhook_endpoints.c.id == hook["webhookEndpointId"]).values(secret_sealed=b"\x01" * 40))
        await shop.create_intent()

        rows = await eventually(lambda: deliveries(live, hook["webhookEndpointId"], "failed"), what="the delivery failed after its schedule")
        assert rows[0].attempts == 5 and rows[0].last_status_code is None  # 1 + the 4 retries
        assert rows[0].last_error.startswith("not sent: ") and "in the gateway" in rows[0].last_error
        assert receiver.requests == []
