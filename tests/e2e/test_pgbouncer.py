"""The gateway behind a real PgBouncer in transaction mode (docs/operations.md, "Behind
PgBouncer"): migrated through it, two `paygate serve` processes paying, refunding,
capturing and settling an unknown outcome through it, their relays archiving and sending
webhooks, their leases and change listeners on PAYGATE_DATABASE_SESSION_URL (PostgreSQL
directly). What is refused through the pooler: tests/server/storage/test_pooler_sessions.py.

Skipped with the reason where pgbouncer is not installed (.ci/run installs Debian's) or
PAYGATE_TEST_DATABASE_URL is unset.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import paygate
from paygate_server.cdc.archive import ArchiveReader
from paygate_server.cdc.store import LocalStore
from paygate_server.procs import ServiceProcess, gateway_command
from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.e2e.test_processing import CVC
from tests.support.databases import PG_ENV, another_database, pg_base_url
from tests.support.eventually import eventually
from tests.support.http_stub import Reply, StubServer
from tests.support.pgbouncer import (
    PgBouncer,
    lease_holders,
    migrate_through,
    pgbouncer_installed,
    pgbouncer_or_skip,
    through,
)
from tests.support.processes import gateway_env, make_merchant
from tests.support.signing import Credentials, SignedClient

# Skipped before any fixture runs (the module's log scan included, which would otherwise
# find no request lines to judge): the two reasons known without starting anything.
pytestmark = [
    pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PgBouncer tests need {PG_ENV}; .ci/run sets it"),
    pytest.mark.skipif(not pgbouncer_installed(), reason="pgbouncer is not installed (.ci/run installs Debian's)"),
]


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    with pgbouncer_or_skip() as pooler:
        yield pooler


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database (direct URL): the tests migrate it through the pooler."""
    with another_database(pg_base_url(), tmp_path, migrated=False) as url:
        yield url


def _card(base_url: str, number: str) -> str:
    keys = httpx.get(f"{base_url}/checkout/v1/keys").json()
    return paygate.encrypt_card(keys, number=number, exp_month=12, exp_year=2034, cvc=CVC)


async def _process(shop: SignedClient, base_url: str, intent_id: str, number: str) -> httpx.Response:
    return await shop.post("/api/v1/payment/process", {
        "paymentIntentId": intent_id, "paymentMethod": "card",
        "paymentDetails": {"encryptedCard": _card(base_url, number)}})


async def _scenario(stack: dict[str, ServiceProcess], creds: Credentials, hooks: StubServer,
                    archive: Path) -> list[str]:
    a, b = stack["a"].base_url, stack["b"].base_url
    with paygate.Client(creds.api_key, creds.signing_secret, a) as client:
        client.webhook_endpoints.create(f"{hooks.url}/hooks", events=["payment_intent.succeeded"])
    async with httpx.AsyncClient(base_url=a, timeout=40) as on_a, httpx.AsyncClient(base_url=b, timeout=40) as on_b:
        shop_a, shop_b = SignedClient(on_a, creds), SignedClient(on_b, creds)

        # Paid through B while A long-polls: only B's commit, through PostgreSQL's NOTIFY to
        # A's listener (on the session URL), can wake A before the wait's 20 s.
        paid = (await shop_b.create_intent(amount=2500))["paymentIntentId"]
        started = time.monotonic()
        waiter = asyncio.create_task(shop_a.get(f"/api/v1/payment/status?paymentIntentId={paid}&wait=20"))
        await eventually(lambda: shop_a.get(f"/api/v1/payment/intent/{paid}"), timeout=10,
                         until=lambda r: r.status_code == 200, what="the intent on A")
        r = await _process(shop_b, b, paid, "4242424242424242")
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        woken = await waiter  # by B's first commit (in_progress) or its second
        assert woken.json()["status"] in {"in_progress", "succeeded"}, woken.text
        assert time.monotonic() - started < 10, "A's long-poll was not woken by B's commit"

        r = await shop_a.post("/api/v1/payment/refund", {"paymentIntentId": paid, "amount": 1000},
                              idempotency_key="refund-1")
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        again = await shop_b.post("/api/v1/payment/refund", {"paymentIntentId": paid, "amount": 1000},
                                  idempotency_key="refund-1")
        assert again.json() == r.json()  # the stored answer, through the other process

        held = (await shop_a.create_intent(amount=4000, captureMethod="manual"))["paymentIntentId"]
        r = await _process(shop_a, a, held, "4242424242424242")
        assert r.status_code == 200 and r.json()["status"] == "requires_capture", r.text
        r = await shop_b.post("/api/v1/payment/capture", {"paymentIntentId": held, "amount": 3000})
        assert r.status_code == 200 and r.json()["amountReceived"] == 3000, r.text

        # The processor's answer is lost: in_progress, then the reconciler settles it.
        unknown = (await shop_b.create_intent(amount=1234))["paymentIntentId"]
        r = await _process(shop_b, b, unknown, "4000000000001026")
        assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text
        settled = await shop_a.final_status(unknown, timeout=30)
        assert settled["status"] == "succeeded", settled

    intents = [paid, held, unknown]

    def webhooked() -> set[str]:
        return {i for i in intents for seen in hooks.seen if i.encode() in seen.body}

    await eventually(webhooked, until=lambda got: got == set(intents), timeout=20, what="a webhook for each intent")

    async def archived() -> set[str]:
        return {c.intent_id async for c in ArchiveReader(LocalStore(archive)).changes()}

    await eventually(archived, until=lambda got: set(intents) <= got, timeout=20, what="every intent archived")
    return intents


def test_pay_refund_capture_and_reconcile_through_pgbouncer(bouncer: PgBouncer, database: str,
                                                            tmp_path: Path) -> None:
    migrate_through(bouncer, database, tmp_path)
    creds = make_merchant(database)
    env = {**FAST_RECONCILE, "PAYGATE_DATABASE_SESSION_URL": database, "PAYGATE_WEBHOOK_ALLOW_PRIVATE": "1",
           "PAYGATE_WEBHOOK_POLL_INTERVAL_S": "0.2", "PAYGATE_ARCHIVE_LINGER_S": "0.3",
           "PAYGATE_RELAY_LEASE_RETRY_S": "0.2", "PAYGATE_ARCHIVE_DIR": str(tmp_path / "archive")}

    async def run(stack: dict[str, ServiceProcess]) -> None:
        async with StubServer(lambda seen: Reply(200, b"{}")) as hooks:
            await _scenario(stack, creds, hooks, tmp_path / "archive")
            # Each consumer's lease held once, on the session URL's connections: none of the
            # backends PgBouncer holds.
            holders = await lease_holders(database)
            assert holders and len(holders) == len(set(holders)), holders

    with SimulatorProcess(tmp_path / "simulator.db", slow_card_delay_s=6.0) as simulator:
        env["PAYGATE_PROCESSOR_URL"] = simulator.base_url
        gateways = {name: ServiceProcess(lambda fd: gateway_command(fd), log_path=tmp_path / f"gateway-{name}.log",
                                         env=gateway_env(through(bouncer, database), tmp_path / name, **env))
                    for name in ("a", "b")}
        with gateways["a"], gateways["b"]:
            asyncio.run(run(gateways))
            pooled = bouncer.server_pids()
            assert pooled, "nothing went through PgBouncer"
            assert pooled.isdisjoint(asyncio.run(lease_holders(database)))
