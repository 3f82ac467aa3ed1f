"""A refund that ends ``failed`` keeps why (``refunds.failure_reason``, the refund's
``failureReason``), on SQLite and PostgreSQL, where the merchant and the operator look: the
refund's answer, the intent's history (from the database and from the archive), ``paygate
audit show`` and the console's payment page (escaped). Refused by a real simulator process,
and by a processor (speaking the simulator's protocol) that quotes the card back: its words
are kept without the card number. A refund refused before anything was sent (an amount
Stripe cannot take) is in tests/server/processing/connectors/test_connector_currencies_stripe.py.
"""
from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import paygate
from paygate_server.config import Settings
from paygate_server.processing.connectors import ChargeOutcome, RefundResult
from paygate_server.processing.settle import refund_outcome
from paygate_server.processors.accounts import add_account
from paygate_server.simulator.testing import start_simulator
from tests.server.console.conftest import InProcessConsole, running_console
from tests.support.app import TEST_MASTER_KEY, InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.http_stub import Action, Reply, Seen, StubServer
from tests.support.pgbouncer import paygate as paygate_cli
from tests.support.secret_scan import places_holding
from tests.support.signing import SignedClient

PAN = "4242424242424242"
QUOTED = ("4000056655665556", "4000 0566 5566 5556", "4000-0566-5566-5556")


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(tmp_path_factory.mktemp("simulator")) as url:
        yield url


@dataclass
class Bench:
    gw: InProcessGateway
    con: InProcessConsole
    settings: Settings


@pytest.fixture
async def bench(fresh_database_url: str, tmp_path: Path, simulator_url: str) -> AsyncIterator[Bench]:
    # A database of its own: the test of the archive runs the relay, whose offsets are in it.
    settings = make_settings(fresh_database_url, tmp_path, processor_url=simulator_url)
    async with running_gateway(settings) as gw, running_console(settings) as con:
        r = await con.log_in(await con.operator("viewer"))
        assert r.status_code == 303, r.text
        yield Bench(gw, con, settings)


async def _paid(gw: InProcessGateway, shop: SignedClient, amount: int = 2500) -> str:
    pid: str = (await shop.create_intent(amount=amount))["paymentIntentId"]
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=PAN, exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return pid


async def _refunded(shop: SignedClient, pid: str, amount: int) -> dict[str, Any]:
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": amount})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _refund_events(shop: SignedClient, pid: str) -> list[dict[str, Any]]:
    r = await shop.get(f"/api/v1/payment/intent/{pid}/history")
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json()["data"] if e["type"].startswith("refund.")]


async def _console_refunds(con: InProcessConsole, pid: str) -> str:
    """The payment page's refunds table, as the console serves it."""
    page = await con.http.get(f"/payments/{pid}")
    assert page.status_code == 200, page.text
    return page.text[page.text.index("<h2>Refunds</h2>"):page.text.index("<h2>Webhooks</h2>")]


async def test_a_refund_the_simulator_refuses_keeps_why(bench: Bench, simulator_url: str) -> None:
    gw = bench.gw
    shop = await gw.new_merchant()
    pid = await _paid(gw, shop)
    # Refunded in full at the processor behind the gateway's back (from its dashboard): the
    # gateway's refund is then more than remains of the charge there, and is refused.
    async with httpx.AsyncClient(base_url=simulator_url) as sim:
        [charge] = (await sim.get("/v1/charges", params={"paymentIntentId": pid})).json()["data"]
        behind = await sim.post("/v1/refunds", json={"reference": f"dashboard-{pid}",
                                                     "chargeReference": charge["reference"], "amount": 2500})
        assert behind.status_code == 200, behind.text
    why = "amount_exceeds_remaining: refund amount exceeds what remains of the charge (0)"

    refund = await _refunded(shop, pid, 1000)
    assert (refund["status"], refund["failureReason"]) == ("failed", why)
    created, updated = await _refund_events(shop, pid)
    assert (created["status"], created["failureReason"]) == ("pending", None)
    assert updated == refund  # the history's refund is the answer's, reason and all

    env = {"PAYGATE_DATABASE_URL": bench.settings.database_url, "PAYGATE_DATA_DIR": str(bench.settings.data_dir),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    shown = paygate_cli("audit", "show", pid, env=env)
    assert shown.returncode == 0 and f"failure={json.dumps(why)}" in shown.stdout, shown.stdout + shown.stderr
    await gw.gateway.relay.drain()  # into the archive: the reason goes with the refund's change
    archived = paygate_cli("audit", "show", pid, "--archive", "--json", env=env)
    assert archived.returncode == 0, archived.stderr
    assert [e["data"] for e in json.loads(archived.stdout)["data"] if e["type"] == "refund.updated"] == [refund]

    assert html.escape(why) in await _console_refunds(bench.con, pid)


def _refusing(quoting: str) -> Callable[[Seen], Action]:
    """A processor (the simulator's protocol) that approves charges and refuses refunds,
    saying why in words that quote the card (a refund of 100) or hold markup (of 200)."""
    def answer(seen: Seen) -> Action:
        body = orjson.loads(seen.body)
        if seen.target == "/v1/charges":
            return Reply(200, orjson.dumps({"reference": body["reference"], "status": "approved", "authCode": "A1"}))
        if seen.target == "/v1/refunds":
            said = (f"refund to card {quoting} not allowed" if body["amount"] == 100
                    else "<script>alert(1)</script> & refunds closed")
            return Reply(422, orjson.dumps({"status": "error", "code": "charge_not_refundable", "message": said}))
        return Reply(404, orjson.dumps({"status": "error", "code": "not_found", "retryable": False}))
    return answer


@pytest.mark.parametrize("quoted", QUOTED[:2])
async def test_a_refusal_quoting_the_card_is_kept_without_it(bench: Bench, quoted: str) -> None:
    gw = bench.gw
    async with StubServer(_refusing(quoted)) as stub:
        shop = await gw.new_merchant()
        await add_account(gw.gateway.db, gw.gateway.master_key, merchant_id=shop.creds.merchant_id,
                          kind="simulator", name="refusing", settings={"url": stub.url}, credentials={})
        pid = await _paid(gw, shop)
        quoting = await _refunded(shop, pid, 100)
        marked_up = await _refunded(shop, pid, 200)
    # The words that quoted the card are left out, the processor's code kept; other words are
    # kept as they were said, and the console escapes them.
    assert (quoting["status"], quoting["failureReason"]) == ("failed", "charge_not_refundable")
    said = "charge_not_refundable: <script>alert(1)</script> & refunds closed"
    assert (marked_up["status"], marked_up["failureReason"]) == ("failed", said)
    assert [e["failureReason"] for e in await _refund_events(shop, pid)] == [
        None, "charge_not_refundable", None, said]
    shown = await _console_refunds(bench.con, pid)
    assert html.escape(said) in shown and "<script>" not in shown
    assert await places_holding(QUOTED, data_dir=bench.settings.data_dir,
                                database_url=bench.settings.database_url) == []


def test_a_reason_with_a_card_number_is_not_kept_whatever_the_connector() -> None:
    """The settle path checks the text again: a connector (an extension's) may not have."""
    for quoted in QUOTED:
        outcome = refund_outcome(RefundResult("rref_1", ChargeOutcome.DECLINED, f"card {quoted} refused"),
                                 schedule=(1.0,))
        assert (outcome.status, outcome.error_message) == ("failed", None)
    kept = refund_outcome(RefundResult("rref_1", ChargeOutcome.FAILED, "x" * 900), schedule=(1.0,))
    assert kept.error_message == "x" * 500
