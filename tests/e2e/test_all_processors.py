"""The must-show of issue #18: one merchant routed EUR to Adyen, USD to Stripe (localstripe,
a real fake-Stripe process) and everything else to the simulator, with failover from a
failing simulator account to a second one — through real gateway processes and the SDK.

The run renders which payment went where and why as a table; docs/processors.md holds
that table, and this test fails if the two differ (the docs say what the code does)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import paygate
from paygate_server.crypto import MasterKey
from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.simulator.testing import SimulatorProcess
from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all
from tests.e2e.conftest import Stack, running_stack
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually
from tests.support.fake_adyen import FakeAdyen
from tests.support.http_stub import StubServer
from tests.support.localstripe import SECRET_KEY, enter_localstripe
from tests.support.secret_scan import places_holding

ADYEN_HMAC = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
STRIPE_WEBHOOK_SECRET = "whsec_all_processors_0123456789"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "processors.md"
_ATTEMPTS = Sql("SELECT kind, status, connector, processor_id FROM transactions WHERE intent_id = :intent_id"
                " ORDER BY created_at, id")
RULES = [{"when": {"currency": ["EUR"]}, "use": ["Adyen EU"]},
         {"when": {"currency": ["USD"]}, "use": ["Stripe US"]},
         {"use": ["Simulator primary", "Simulator backup"]}]

# (what, currency, amount, card, capture method, why)
PAYMENTS = [
    ("EUR card", "EUR", 2500, "4242424242424242", "automatic", "rule 1 (EUR)"),
    ("USD card", "USD", 1800, "4242424242424242", "automatic", "rule 2 (USD)"),
    ("GBP card", "GBP", 3100, "4242424242424242", "automatic",
     "rule 3 (the rest): primary answered 'nothing charged' → backup"),
    ("USD decline", "USD", 1900, "4000000000000341", "automatic", "rule 2; a decline is an answer: no failover"),
    ("GBP insufficient funds", "GBP", 4100, "4000000000009995", "automatic",
     "rule 3: primary 'nothing charged' → backup, which declined"),
    ("EUR authorize, capture 3000", "EUR", 5000, "5555555555554444", "manual",
     "rule 1; the capture went where the authorization did"),
    ("USD authorize, capture 1000", "USD", 1500, "4242424242424242", "manual",
     "rule 2; the capture went where the authorization did"),
]


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, Any]]]:
    data_dir: Path = tmp_path_factory.mktemp("all-processors")
    with contextlib.ExitStack() as stack_:
        stripe_url = enter_localstripe(stack_, data_dir)
        sims = {name: stack_.enter_context(SimulatorProcess(data_dir / f"{name}.db"))
                for name in ("primary", "backup")}
        httpx.post(f"{sims['primary'].base_url}/v1/_faults", json={"errorRate": 1.0}).raise_for_status()
        stack = stack_.enter_context(running_stack(database_url, data_dir, PAYGATE_ARCHIVE_LINGER_S="0.2"))
        yield stack, {"stripe": stripe_url, "sims": sims}


async def _attempts(stack: Stack, intent_id: str) -> list[dict[str, Any]]:
    db = create_database(stack.database_url)
    try:
        async with db.read() as conn:
            return [dict(r) for r in await fetch_all(conn, _ATTEMPTS, intent_id=intent_id)]
    finally:
        await db.dispose()


def render_table(rows: list[tuple[str, ...]]) -> str:
    head = ("payment", "rule's accounts", "attempts (account: outcome)", "final", "why")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def test_one_merchant_routed_to_adyen_stripe_and_the_simulator_with_failover(world: tuple[Stack, dict[str, Any]]) -> None:
    stack, peers = world
    creds = stack.merchant("Three processors")
    master = MasterKey(bytes.fromhex(TEST_MASTER_KEY))

    async def run() -> list[tuple[str, ...]]:
        fake = FakeAdyen("ShopECOM", ADYEN_HMAC)
        async with StubServer(fake.handler) as adyen, \
                paygate.AsyncClient(creds.api_key, creds.signing_secret, stack.gateway.base_url) as client, \
                httpx.AsyncClient(base_url=stack.gateway.base_url, timeout=30) as http:
            db = create_database(stack.database_url)
            try:
                specs = {
                    "Adyen EU": ("adyen", {"apiBase": adyen.url, "merchantAccount": "ShopECOM"},
                                 {"apiKey": "test-api-key", "hmacKey": ADYEN_HMAC}),
                    "Stripe US": ("stripe", {"apiBase": peers["stripe"]},
                                  {"secretKey": SECRET_KEY, "webhookSecret": STRIPE_WEBHOOK_SECRET}),
                    "Simulator primary": ("simulator", {"url": peers["sims"]["primary"].base_url}, {}),
                    "Simulator backup": ("simulator", {"url": peers["sims"]["backup"].base_url}, {}),
                }
                ids: dict[str, str] = {}
                for name, (kind, settings, secrets) in specs.items():
                    ids[name] = (await add_account(db, master, merchant_id=creds.merchant_id, kind=kind, name=name,
                                                   settings=settings, credentials=secrets)).id
                await set_routing(db, merchant_id=creds.merchant_id, document=[
                    {**rule, "use": [ids[n] for n in rule["use"]]} for rule in RULES])
            finally:
                await db.dispose()
            names = {v: k for k, v in ids.items()}
            hook = f"/processors/v1/{ids['Adyen EU']}/webhooks"

            table = []
            paid: dict[str, Any] = {}
            for what, currency, amount, card, capture, why in PAYMENTS:
                intent = await client.payment_intents.create(amount=amount, currency=currency,
                                                             product_details={"sku": what},
                                                             capture_method=capture)  # type: ignore[arg-type]
                jwe = await client.encrypt_card(number=card, exp_month=12, exp_year=2034, cvc="123")
                key = f"process-{intent.id}"
                processed = await client.payment_intents.process(intent.id, encrypted_card=jwe, idempotency_key=key)
                # The same request again (a client that lost the answer): the same answer, nothing sent.
                again = await client.payment_intents.process(intent.id, encrypted_card=jwe, idempotency_key=key)
                assert (again.status, again.id) == (processed.status, processed.id)
                if capture == "manual":
                    assert processed.status == "requires_capture", (what, processed)
                    captured = await client.payment_intents.capture(intent.id, amount=amount - 2000 if
                                                                    currency == "EUR" else 1000)
                    if currency == "EUR":  # Adyen: received, completed by its notification
                        assert captured.status == "in_progress"
                        assert (await fake.deliver(http, hook)).text == "[accepted]"
                final = await client.payment_intents.wait_for_status(intent.id, timeout=30)
                attempts = await _attempts(stack, intent.id)
                assert len([t for t in attempts if t["kind"] in ("charge", "authorization")]) == len(
                    {t["connector"] for t in attempts if t["kind"] in ("charge", "authorization")})  # one per account
                paid[what] = attempts
                route = next(r["use"] for r in RULES if "when" not in r or currency in r["when"]["currency"])
                table.append((what, " → ".join(route),
                              "; ".join(f"{t['kind']} {names[t['connector']]}: {t['status']}" for t in attempts),
                              final.status, why))
                # Where the money is, at each processor.
                charged = [t for t in attempts if t["status"] == "succeeded" and t["kind"] != "capture"]
                if currency == "USD" and charged:
                    pi = httpx.get(f"{peers['stripe']}/v1/payment_intents/{charged[0]['processor_id']}",
                                   auth=(SECRET_KEY, "")).json()
                    assert (pi["status"], pi["amount"], pi["metadata"]["paygate_intent"]) == (
                        "succeeded", amount, intent.id), pi  # (localstripe keeps no amount_received)
                if currency == "GBP":
                    at_backup = httpx.get(f"{peers['sims']['backup'].base_url}/v1/charges",
                                          params={"paymentIntentId": intent.id}).json()["data"]
                    assert [c["status"] for c in at_backup] == ["approved" if final.status == "succeeded"
                                                                else "declined"]
                    assert stack.charges_at_processor(intent.id) == []  # never the default
                if currency == "EUR":
                    assert len([p for p in fake.payments.values() if p.amount == amount]) == 1
            # A refund goes back where the money was taken: Stripe, for the USD card.
            [usd] = paid["USD card"]
            pi = httpx.get(f"{peers['stripe']}/v1/payment_intents/{usd['processor_id']}", auth=(SECRET_KEY, "")).json()
            refund = await client.refunds.create(pi["metadata"]["paygate_intent"], amount=500)
            assert (refund.status, refund.amount) == ("succeeded", 500)
            refunds = httpx.get(f"{peers['stripe']}/v1/refunds", params={"payment_intent": usd["processor_id"]},
                                auth=(SECRET_KEY, "")).json()["data"]
            assert [r["amount"] for r in refunds] == [500]
            # No credential anywhere in the clear: logs, archive, any column.
            archived = stack.data_dir / "archive"
            await eventually(lambda: list(archived.rglob("*.gz")) if archived.exists() else [],
                             what="the history archived")
            assert await places_holding((SECRET_KEY, STRIPE_WEBHOOK_SECRET, "test-api-key", ADYEN_HMAC),
                                        data_dir=stack.data_dir, database_url=stack.database_url) == []
            return table

    table = asyncio.run(run())
    rendered = render_table(table)
    print("\n" + rendered)
    assert [row[3] for row in table] == ["succeeded", "succeeded", "succeeded", "failed", "failed",
                                         "succeeded", "succeeded"]
    assert rendered in DOCS.read_text(), "docs/processors.md's routing table is not this run's:\n" + rendered
