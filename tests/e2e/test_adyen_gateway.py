"""An Adyen account through the gateway (a real gateway process; Adyen's Checkout API and
its notifications served over loopback from its published shapes, signed with the official
library): payments settle by answer or, when the answer is lost, by the AUTHORISATION
notification; captures and refunds settle by theirs; an unverifiable notification is
refused with nothing applied; replayed ones are harmless; an authorization whose outcome
never arrives is canceled by its reference and settled by that cancel's notification."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from paygate_server.crypto import MasterKey
from paygate_server.processors.accounts import add_account
from paygate_server.storage import create_database
from paygate_server.storage.statements import Sql, fetch_all
from tests.e2e.conftest import Stack, running_stack
from tests.e2e.test_processing import encrypted, process
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually
from tests.support.fake_adyen import LOST, FakeAdyen
from tests.support.http_stub import StubServer
from tests.support.secret_scan import places_holding
from tests.support.signing import SignedClient

HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
OTHER_KEY = "11" * 32
_ROWS = {
    "attempts": Sql("SELECT kind, status, connector, reference, processor_id FROM transactions"
                    " WHERE intent_id = :intent_id ORDER BY created_at, id"),
    "refunds": Sql("SELECT status, amount FROM refunds WHERE intent_id = :intent_id"),
    "late": Sql("SELECT object_id FROM late_outcomes WHERE intent_id = :intent_id"),
}


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("adyen")
    with running_stack(database_url, data_dir, PAYGATE_ARCHIVE_LINGER_S="0.2") as s:
        yield s


async def _rows(stack: Stack, what: str, intent_id: str) -> list[dict[str, Any]]:
    db = create_database(stack.database_url)
    try:
        async with db.read() as conn:
            return [dict(r) for r in await fetch_all(conn, _ROWS[what], intent_id=intent_id)]
    finally:
        await db.dispose()


Scenario = Callable[[Stack, SignedClient, httpx.AsyncClient, FakeAdyen, str], Awaitable[None]]


def _run(stack: Stack, scenario: Scenario) -> None:
    creds = stack.merchant("Adyen shop")

    async def run() -> None:
        fake = FakeAdyen("ShopECOM", HMAC_KEY)
        async with StubServer(fake.handler) as adyen, httpx.AsyncClient(base_url=stack.gateway.base_url,
                                                                         timeout=40) as http:
            db = create_database(stack.database_url)
            try:
                account = await add_account(db, MasterKey(bytes.fromhex(TEST_MASTER_KEY)),
                                            merchant_id=creds.merchant_id, kind="adyen", name="Adyen EU",
                                            settings={"apiBase": adyen.url, "merchantAccount": "ShopECOM"},
                                            credentials={"apiKey": "test-api-key", "hmacKey": HMAC_KEY})
            finally:
                await db.dispose()
            await scenario(stack, SignedClient(http, creds), http, fake, f"/processors/v1/{account.id}/webhooks")
            # The credentials are nowhere in the clear: logs, the archive, any column.
            archived = stack.data_dir / "archive"
            await eventually(lambda: [p for p in archived.rglob("*.gz")] if archived.exists() else [],
                             what="the history archived")
            assert await places_holding(("test-api-key", HMAC_KEY, HMAC_KEY.lower()), data_dir=stack.data_dir,
                                        database_url=stack.database_url) == []
            # The scan sees what is there: a setting is stored in the clear, on purpose.
            assert "processor_accounts.settings" in await places_holding(
                ("ShopECOM",), data_dir=stack.data_dir, database_url=stack.database_url)

    asyncio.run(run())


async def _pay(stack: Stack, shop: SignedClient, number: str = "4242424242424242", **intent: Any) -> dict[str, Any]:
    created = await shop.create_intent(currency="EUR", **intent)
    r = await process(shop, created["paymentIntentId"], encrypted(stack, number))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_answers_notifications_and_replays(stack: Stack) -> None:
    async def scenario(stack: Stack, shop: SignedClient, http: httpx.AsyncClient, fake: FakeAdyen,
                       hook: str) -> None:
        paid = await _pay(stack, shop)
        assert paid["status"] == "succeeded", paid
        [attempt] = await _rows(stack, "attempts", paid["paymentIntentId"])
        assert attempt["processor_id"] == fake.charges(attempt["reference"])[0].psp  # pspReference recorded
        declined = await _pay(stack, shop, "4000000000009995")
        assert declined["status"] == "failed" and declined["lastError"]["declineCode"] == "insufficient_funds"
        r = await fake.deliver(http, hook)  # both AUTHORISATIONs, after the answers: nothing changes
        assert (r.status_code, r.text) == (200, "[accepted]")
        assert (await shop.final_status(paid["paymentIntentId"]))["status"] == "succeeded"
        fake.queued = list(fake.delivered)  # Adyen sends a batch again: harmless
        assert (await fake.deliver(http, hook)).text == "[accepted]"
        assert (await shop.final_status(declined["paymentIntentId"]))["status"] == "failed"

    _run(stack, scenario)


def test_a_lost_answer_is_settled_by_the_authorisation_notification(stack: Stack) -> None:
    async def scenario(stack: Stack, shop: SignedClient, http: httpx.AsyncClient, fake: FakeAdyen,
                       hook: str) -> None:
        lost = await _pay(stack, shop, LOST)
        pid = lost["paymentIntentId"]
        assert lost["status"] == "in_progress"
        [attempt] = await _rows(stack, "attempts", pid)
        assert attempt["status"] == "unknown"
        r = await fake.deliver(http, hook)
        assert r.status_code == 200
        final = await shop.final_status(pid)
        assert final["status"] == "succeeded"
        assert len(fake.charges(attempt["reference"])) == 1  # exactly one payment at Adyen
        [attempt] = await _rows(stack, "attempts", pid)
        assert attempt["processor_id"] == fake.charges(attempt["reference"])[0].psp

    _run(stack, scenario)


def test_capture_and_refund_complete_by_notification_and_a_forged_one_changes_nothing(stack: Stack) -> None:
    async def scenario(stack: Stack, shop: SignedClient, http: httpx.AsyncClient, fake: FakeAdyen,
                       hook: str) -> None:
        held = await _pay(stack, shop, amount=5000, captureMethod="manual")
        pid = held["paymentIntentId"]
        assert held["status"] == "requires_capture", held
        fake.queued.clear()
        r = await shop.post("/api/v1/payment/capture", {"paymentIntentId": pid, "amount": 4000})
        assert r.status_code == 200 and r.json()["status"] == "in_progress", r.text  # "received"
        forged = await fake.deliver(http, hook, key=OTHER_KEY)
        assert forged.status_code == 400 and forged.json()["error"]["code"] == "parameter_invalid"
        assert (await shop.get(f"/api/v1/payment/intent/{pid}")).json()["status"] == "in_progress"
        assert (await fake.deliver(http, hook)).status_code == 200
        assert (await shop.final_status(pid))["status"] == "succeeded"
        intent = (await shop.get(f"/api/v1/payment/intent/{pid}")).json()
        assert (intent["status"], intent["amountReceived"]) == ("succeeded", 4000), intent

        r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1500})
        assert r.status_code == 200 and r.json()["status"] in ("pending", "unknown"), r.text
        assert (await fake.deliver(http, hook)).status_code == 200
        refunds = await eventually(lambda: _rows(stack, "refunds", pid),
                                   until=lambda rows: rows and rows[0]["status"] == "succeeded",
                                   what="the refund settled by its notification")
        assert refunds == [{"status": "succeeded", "amount": 1500}]

    _run(stack, scenario)


def test_an_authorization_that_never_answers_is_canceled_by_reference(stack: Stack) -> None:
    async def scenario(stack: Stack, shop: SignedClient, http: httpx.AsyncClient, fake: FakeAdyen,
                       hook: str) -> None:
        lost = await _pay(stack, shop, LOST, amount=7000, captureMethod="manual")
        pid = lost["paymentIntentId"]
        [attempt] = await _rows(stack, "attempts", pid)
        authorisation = list(fake.queued)
        fake.queued.clear()  # its notification is "late": only the cancel's goes first
        # Past the safety window (2 s in these tests) the reconciler cancels it by reference.
        await eventually(lambda: [i for i in fake.queued if i["eventCode"] == "TECHNICAL_CANCEL"], timeout=20,
                         what="a cancel by the authorization's reference")
        assert fake.charges(attempt["reference"])[0].state == "cancelled"
        assert (await fake.deliver(http, hook)).status_code == 200
        final = await shop.final_status(pid)
        assert final["status"] == "failed", final  # nothing charged: the customer may pay again
        fake.queued = authorisation  # the late AUTHORISATION changes nothing now
        assert (await fake.deliver(http, hook)).status_code == 200
        assert (await shop.final_status(pid))["status"] == "failed"
        # …and is no late outcome for the operator: its money was released by the cancel.
        assert await _rows(stack, "late", pid) == []

    _run(stack, scenario)
