"""Processor accounts, routing and failover over real processes (SPEC §7): one merchant's
payments go where its rules say, an account that answers "nothing charged" hands over to
the next one, and an unknown outcome stays at its account (never sent elsewhere)."""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from paygate_server.crypto import MasterKey
from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.simulator.testing import SimulatorProcess
from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_processing import encrypted, process
from tests.support.app import TEST_MASTER_KEY
from tests.support.signing import Credentials, SignedClient

_ATTEMPTS = Sql("SELECT kind, status, connector, reference FROM transactions WHERE intent_id = :intent_id"
                " ORDER BY created_at, id")


@dataclass
class Routed:
    stack: Stack
    creds: Credentials
    accounts: dict[str, str]  # name -> pa_…
    simulators: dict[str, SimulatorProcess]  # name -> its simulator (None for the closed port)

    def charges(self, name: str, intent_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.simulators[name].base_url}/v1/charges", params={"paymentIntentId": intent_id})
        r.raise_for_status()
        return list(r.json()["data"])

    def attempts(self, intent_id: str) -> list[dict[str, Any]]:
        async def run() -> list[dict[str, Any]]:
            db = create_database(self.stack.database_url)
            try:
                async with db.read() as conn:
                    return [dict(r) for r in await fetch_all(conn, _ATTEMPTS, intent_id=intent_id)]
            finally:
                await db.dispose()
        return asyncio.run(run())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _configure(database_url: str, merchant_id: str, urls: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    async def run() -> dict[str, str]:
        db = create_database(database_url)
        master = MasterKey(bytes.fromhex(TEST_MASTER_KEY))
        try:
            ids = {}
            for name, url in urls.items():
                account = await add_account(db, master, merchant_id=merchant_id, kind="simulator", name=name,
                                            settings={"url": url}, credentials={})
                ids[name] = account.id
            document = [{**rule, "use": [ids[n] for n in rule["use"]]} for rule in rules]
            await set_routing(db, merchant_id=merchant_id, document=document)
            return ids
        finally:
            await db.dispose()
    return asyncio.run(run())


@pytest.fixture(scope="module")
def routed(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    data_dir: Path = tmp_path_factory.mktemp("routed")
    with contextlib.ExitStack() as stack_:
        sims = {name: stack_.enter_context(SimulatorProcess(data_dir / f"{name}.db", slow_card_delay_s=6.0))
                for name in ("failing", "second", "euro")}
        httpx.post(f"{sims['failing'].base_url}/v1/_faults", json={"errorRate": 1.0}).raise_for_status()
        stack = stack_.enter_context(running_stack(database_url, data_dir))
        creds = stack.merchant("Routed shop")
        urls = {"down": f"http://127.0.0.1:{_closed_port()}", **{n: s.base_url for n, s in sims.items()}}
        accounts = _configure(database_url, creds.merchant_id, urls, [
            {"when": {"currency": ["EUR"]}, "use": ["euro"]},
            {"when": {"amountMin": 900_000}, "use": ["second", "failing"]},
            {"use": ["down", "failing", "second"]},
        ])
        yield Routed(stack, creds, accounts, sims)


def _pay(routed: Routed, number: str = "4242424242424242", **intent: Any) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=routed.stack.gateway.base_url, timeout=40) as http:
            shop = SignedClient(http, routed.creds)
            created = await shop.create_intent(**intent)
            r = await process(shop, created["paymentIntentId"], encrypted(routed.stack, number))
            assert r.status_code == 200, r.text
            return await shop.final_status(created["paymentIntentId"])
    return asyncio.run(run())


def test_usd_fails_over_past_a_closed_port_and_an_erroring_account_to_the_second(routed: Routed) -> None:
    final = _pay(routed, amount=2500)
    assert final["status"] == "succeeded", final
    pid = final["paymentIntentId"]
    attempts = routed.attempts(pid)
    a = routed.accounts
    assert [(t["connector"], t["status"]) for t in attempts] == [
        (a["down"], "failed"), (a["failing"], "failed"), (a["second"], "succeeded")]
    assert len({t["reference"] for t in attempts}) == 3  # a new reference per account
    assert [c["status"] for c in routed.charges("second", pid)] == ["approved"]
    assert routed.charges("failing", pid) == [] and routed.stack.charges_at_processor(pid) == []


def test_eur_goes_to_its_account_and_a_merchant_without_accounts_to_the_default(routed: Routed) -> None:
    final = _pay(routed, currency="EUR", amount=1200)
    assert final["status"] == "succeeded"
    pid = final["paymentIntentId"]
    assert [t["connector"] for t in routed.attempts(pid)] == [routed.accounts["euro"]]
    assert [c["currency"] for c in routed.charges("euro", pid)] == ["EUR"]

    other = Routed(routed.stack, routed.stack.merchant("No accounts"), {}, routed.simulators)
    final = _pay(other)
    assert final["status"] == "succeeded"
    assert [t["connector"] for t in other.attempts(final["paymentIntentId"])] == ["simulator"]
    assert len(routed.stack.charges_at_processor(final["paymentIntentId"])) == 1


def test_a_decline_is_an_answer_and_never_fails_over(routed: Routed) -> None:
    final = _pay(routed, "4000000000009995", amount=950_000)  # routed to [second, failing]
    assert final["status"] == "failed" and final["lastError"]["declineCode"] == "insufficient_funds"
    assert [t["connector"] for t in routed.attempts(final["paymentIntentId"])] == [routed.accounts["second"]]


def test_a_lost_answer_is_reconciled_at_its_account_never_sent_to_the_next(routed: Routed) -> None:
    final = _pay(routed, "4000000000001026", amount=950_000)  # [second, failing]: the answer is lost
    assert final["status"] == "succeeded", final
    pid = final["paymentIntentId"]
    attempts = routed.attempts(pid)
    assert [(t["connector"], t["status"]) for t in attempts] == [(routed.accounts["second"], "succeeded")]
    assert [c["status"] for c in routed.charges("second", pid)] == ["approved"]
    assert routed.charges("failing", pid) == []


def test_a_timeout_is_reconciled_at_its_account_never_sent_to_the_next(routed: Routed) -> None:
    # 1018 answers after 6 s, past the gateway's 2.5 s processor timeout (FAST_RECONCILE).
    final = _pay(routed, "4000000000001018", amount=950_000)  # [second, failing]
    assert final["status"] == "succeeded", final
    pid = final["paymentIntentId"]
    assert [(t["connector"], t["status"]) for t in routed.attempts(pid)] == [(routed.accounts["second"], "succeeded")]
    assert [c["status"] for c in routed.charges("second", pid)] == ["approved"]
    assert routed.charges("failing", pid) == []


def test_a_retryable_refusal_is_retried_at_its_account_with_the_same_reference(routed: Routed) -> None:
    """1034's first call is a 503 with nothing charged, and a retry of that reference is
    approved: the gateway retries the same attempt there (docs/processors.md) rather than
    failing over, and a new reference would only meet the 503 again."""
    final = _pay(routed, "4000000000001034", amount=950_000)  # [second, failing]
    assert final["status"] == "succeeded", final
    pid = final["paymentIntentId"]
    [attempt] = routed.attempts(pid)
    assert (attempt["connector"], attempt["status"]) == (routed.accounts["second"], "succeeded")
    assert [(c["reference"], c["status"]) for c in routed.charges("second", pid)] == [
        (attempt["reference"], "approved")]
    assert routed.charges("failing", pid) == []


def test_a_merchant_with_accounts_and_no_rules_tries_them_oldest_first(routed: Routed) -> None:
    """docs/processors.md's decision where SPEC §7 is silent: no rules, every active
    account in the order they were added (the first here refuses connections)."""
    creds = routed.stack.merchant("Accounts, no rules")

    async def add() -> dict[str, str]:
        db = create_database(routed.stack.database_url)
        try:
            ids = {}
            for name, url in (("down", f"http://127.0.0.1:{_closed_port()}"),
                              ("second", routed.simulators["second"].base_url)):
                ids[name] = (await add_account(db, MasterKey(bytes.fromhex(TEST_MASTER_KEY)),
                                               merchant_id=creds.merchant_id, kind="simulator", name=name,
                                               settings={"url": url}, credentials={})).id
            return ids
        finally:
            await db.dispose()
    ids = asyncio.run(add())
    mine = Routed(routed.stack, creds, ids, routed.simulators)
    final = _pay(mine, amount=2600)
    assert final["status"] == "succeeded", final
    assert [(t["connector"], t["status"]) for t in mine.attempts(final["paymentIntentId"])] == [
        (ids["down"], "failed"), (ids["second"], "succeeded")]


def test_a_refund_goes_to_the_account_that_took_the_money(routed: Routed) -> None:
    final = _pay(routed, amount=3100)

    async def refund() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=routed.stack.gateway.base_url, timeout=40) as http:
            shop = SignedClient(http, routed.creds)
            r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": final["paymentIntentId"],
                                                           "amount": 1000})
            assert r.status_code == 200, r.text
            return dict(r.json())

    done = asyncio.run(refund())
    assert done["status"] == "succeeded", done
    [charge] = routed.charges("second", final["paymentIntentId"])
    assert charge["status"] == "approved"
    r = httpx.get(f"{routed.simulators['second'].base_url}/v1/settlements",
                  params={"date": __import__("datetime").date.today().isoformat()})
    refunds = [x for x in r.json()["refunds"] if x["paymentIntentId"] == final["paymentIntentId"]]
    assert [x["amount"] for x in refunds] == [1000]


def test_settlement_is_reconciled_per_account(routed: Routed) -> None:
    """``paygate reconcile settlement --account pa_…`` compares that account's report with
    the operations that went there (and the default processor's with its own)."""
    import datetime as dt
    import json
    import os
    import subprocess
    import sys

    from tests.support.processes import gateway_env

    final = _pay(routed, amount=4321)  # down → failing → second
    env = {**os.environ, **gateway_env(routed.stack.database_url, routed.stack.data_dir,
                                       PAYGATE_PROCESSOR_URL=routed.stack.simulator.base_url)}
    today = dt.datetime.now(dt.UTC).date().isoformat()

    def settlement(*extra: str, clean: bool = True) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "paygate_server", "reconcile", "settlement", "--date", today,
                               "--json", *extra], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode in ((0,) if clean else (0, 1)), done.stderr  # 1: mismatches
        return dict(json.loads(done.stdout))

    second = settlement("--account", routed.accounts["second"])
    assert second["mismatches"] == 0 and second["processorRecords"] >= 1
    assert second["processorRecords"] == second["gatewayRecords"]
    charge = routed.charges("second", final["paymentIntentId"])
    assert len(charge) == 1
    # The default processor's report is compared with the default's operations only: nothing
    # of this merchant's (other test modules share the database with defaults of their own).
    default = settlement(clean=False)
    assert not [m for m in default["items"] if m["paymentIntentId"] == final["paymentIntentId"]]
    done = subprocess.run([sys.executable, "-m", "paygate_server", "reconcile", "settlement", "--date", today,
                           "--account", "pa_nosuchaccount"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (2, "paygate: no processor account pa_nosuchaccount")
