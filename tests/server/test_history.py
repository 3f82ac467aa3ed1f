"""An intent's history in its API shape (SPEC §4), on SQLite and PostgreSQL: the endpoint,
``paygate audit show`` (from the database and from the archive) and the OpenAPI schema.

A real payment against the processor simulator (a child process): a declined card, then an
approved one, then a partial refund.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import paygate
from paygate_server.cdc.archive import ArchiveReader
from paygate_server.cdc.audit import verify_archive
from paygate_server.cdc.index import segments_of
from paygate_server.intents.history import OBJECT_KINDS, history_event
from paygate_server.simulator.testing import start_simulator
from paygate_server.storage.archive_index import ArchiveIndex
from paygate_server.storage.changes import Change
from paygate_server.storage.schema import CAPTURED_TABLES
from tests.server.console.conftest import running_console
from tests.support.app import TEST_MASTER_KEY, InProcessGateway, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.pruning import forget_index, prune_rows
from tests.support.signing import SignedClient

INTENT = "/api/v1/payment/intent"


@pytest.fixture(scope="module")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with start_simulator(tmp_path_factory.mktemp("simulator"), slow_card_delay_s=1.0) as url:
        yield url


@pytest.fixture
async def own_gw(fresh_database_url: str, tmp_path: Path,
                 simulator_url: str) -> AsyncIterator[InProcessGateway]:
    # A database of its own: the archive test runs the relay, whose offsets live in the database.
    settings = gateway_settings(fresh_database_url, tmp_path, processor_url=simulator_url)
    async with running_gateway(settings) as g:
        yield g


async def _pay(gw: InProcessGateway, shop: SignedClient, pid: str, number: str) -> dict[str, Any]:
    jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number=number,
                               exp_month=12, exp_year=2034, cvc="123")
    r = await shop.post("/api/v1/payment/process", {"paymentIntentId": pid, "paymentMethod": "card",
                                                    "paymentDetails": {"encryptedCard": jwe}})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _decline_pay_refund(gw: InProcessGateway) -> tuple[SignedClient, str, dict[str, Any]]:
    shop = await gw.new_merchant()
    intent = await shop.create_intent(amount=2500, metadata={"orderId": "7"})
    pid = intent["paymentIntentId"]
    assert (await _pay(gw, shop, pid, "4000000000009995"))["status"] == "failed"
    assert (await _pay(gw, shop, pid, "4242424242424242"))["status"] == "succeeded"
    r = await shop.post("/api/v1/payment/refund", {"paymentIntentId": pid, "amount": 1000, "reason": "dented"})
    assert r.status_code == 200, r.text
    refund = r.json()
    assert refund["status"] == "succeeded", refund
    return shop, pid, refund


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


EXPECTED = [
    ("payment_intent.created", "created"),
    ("payment_intent.updated", "in_progress"), ("attempt.created", "pending"),
    ("attempt.updated", "failed"), ("payment_intent.updated", "failed"),
    ("payment_intent.updated", "in_progress"), ("attempt.created", "pending"),
    ("attempt.updated", "succeeded"), ("payment_intent.updated", "succeeded"),
    ("payment_intent.updated", "succeeded"), ("refund.created", "pending"),
    ("refund.updated", "succeeded"),
]


async def test_history_events_have_the_api_shape(own_gw: InProcessGateway, tmp_path: Path) -> None:
    gw = own_gw
    shop, pid, refund = await _decline_pay_refund(gw)
    r = await shop.get(f"{INTENT}/{pid}/history")
    assert r.status_code == 200, r.text
    events = r.json()["data"]

    assert [(e["type"], e["data"]["status"]) for e in events] == EXPECTED
    assert [e["sequence"] for e in events] == list(range(1, len(EXPECTED) + 1))
    assert all(set(e) == {"sequence", "type", "objectId", "data", "createdAt"} for e in events)
    assert all(e["createdAt"].endswith("Z") for e in events)

    # Intents: the intent endpoint's object (decoded JSON columns, RFC 3339 times), never
    # the client secret; the last one is exactly what GET …/intent/{id} answers now.
    intents = [e for e in events if e["type"].startswith("payment_intent.")]
    assert all(e["objectId"] == pid and e["data"]["paymentIntentId"] == pid for e in intents)
    assert intents[0]["data"]["productDetails"] == {"sku": "mug-01", "name": "Mug"}
    assert intents[0]["data"]["metadata"] == {"orderId": "7"}
    assert intents[0]["data"]["createdAt"].endswith("Z")
    assert intents[2]["data"]["lastError"]["declineCode"] == "insufficient_funds"
    assert intents[-1]["data"]["amountRefunded"] == 1000
    assert intents[-1]["data"] == (await shop.get(f"{INTENT}/{pid}")).json()

    # Attempts: the SPEC's attempt object, card as brand/last4/expiry only.
    attempts = [e["data"] for e in events if e["type"].startswith("attempt.")]
    declined, approved = attempts[1], attempts[3]
    assert set(declined) == {"attemptId", "paymentIntentId", "kind", "status", "amount", "currency",
                             "card", "declineCode", "createdAt", "updatedAt"}
    assert (declined["kind"], declined["amount"], declined["currency"], declined["declineCode"]) == (
        "charge", 2500, "USD", "insufficient_funds")
    assert declined["card"] == {"brand": "visa", "last4": "9995", "expMonth": 12, "expYear": 2034}
    assert (approved["status"], approved["declineCode"], approved["card"]["last4"]) == ("succeeded", None, "4242")
    assert declined["attemptId"] != approved["attemptId"] and declined["attemptId"].startswith("txn_")

    # Refunds: exactly what the refund endpoint answered.
    refunds = [e for e in events if e["type"].startswith("refund.")]
    assert refunds[-1]["data"] == refund and refunds[-1]["objectId"] == refund["refundId"]

    # Nothing internal or secret: no raw column names, no hashes, sealed fields or references.
    keys = set(_keys(events))
    assert not [k for k in keys if "_" in k], keys
    text = r.text
    for forbidden in ("clientSecret", "client_secret", "fingerprint", "vault", "reference", "authCode",
                      "auth_code", "sealed", "4242424242424242", "4000000000009995", "ref_"):
        assert forbidden not in text, forbidden

    # The OpenAPI document describes these answers (the attempt and card objects closed).
    doc = (await gw.http.get("/api/v1/openapi.json")).json()
    schema = {**doc["components"]["schemas"]["History"], "components": doc["components"]}
    Draft202012Validator(schema).validate(r.json())
    for index, extra in ((2, {"reference": "ref_x"}), (0, {"clientSecret": "pi_x_secret_y"})):
        leaked = {**events[index], "data": {**events[index]["data"], **extra}}
        assert not Draft202012Validator(schema).is_valid({"data": [leaked]}), extra

    # `paygate audit show` prints the same events, from the database and from the archive.
    env = {"PAYGATE_DATABASE_URL": gw.gateway.settings.database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    shown = _paygate("audit", "show", pid, "--json", env=env)
    assert json.loads(shown.stdout) == {"paymentIntentId": pid, "data": events}
    text_out = _paygate("audit", "show", pid, env=env).stdout
    assert "attempt.updated" in text_out and "decline=insufficient_funds" in text_out
    assert "card=visa/9995" in text_out and "4000000000009995" not in text_out
    _paygate("relay", "--once", env=env)
    archived = _paygate("audit", "show", pid, "--archive", "--json", env=env)
    assert json.loads(archived.stdout)["data"] == events


async def test_history_is_whole_after_the_database_lets_it_go(own_gw: InProcessGateway, tmp_path: Path) -> None:
    gw = own_gw
    shop, pid, _ = await _decline_pay_refund(gw)
    events = (await shop.get(f"{INTENT}/{pid}/history")).json()["data"]
    await gw.gateway.relay.drain()  # into the archive (a folder under the data dir)
    db = gw.gateway.db
    env = {"PAYGATE_DATABASE_URL": gw.gateway.settings.database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}

    # The oldest half, then all of it, leaves the database: the same events, read from both.
    assert await prune_rows(db, "intent_id = :pid AND intent_seq <= 6", pid=pid) == 6
    r = await shop.get(f"{INTENT}/{pid}/history")
    assert r.status_code == 200 and r.json()["data"] == events, r.text
    assert await prune_rows(db, "intent_id = :pid", pid=pid) == len(EXPECTED) - 6
    r = await shop.get(f"{INTENT}/{pid}/history")
    assert r.status_code == 200 and r.json()["data"] == events, r.text
    assert json.loads(_paygate("audit", "show", pid, "--json", env=env).stdout)["data"] == events
    # The console's payment page shows the same whole timeline (SPEC §12: from the change
    # history), the archived part included.
    async with running_console(gw.gateway.settings) as con:
        assert (await con.log_in(await con.operator("viewer"))).status_code == 303
        page = (await con.http.get(f"/payments/{pid}")).text
    shown = re.findall(r"<strong>([a-z_.]+)</strong> \S+ → ([a-z_]+)</li>", page)
    assert shown == [(e["type"], e["data"]["status"]) for e in events] == EXPECTED
    other = await gw.new_merchant()
    assert (await other.get(f"{INTENT}/{pid}/history")).status_code == 404
    # Pruned or not, verify proves the history whole (ids gap-free on PostgreSQL too: the
    # decline, payment and refund rolled back nothing that captured).
    report = await verify_archive(db, ArchiveReader(gw.gateway.archive_store))
    assert report.ok and report.archive_only == len(EXPECTED) and report.lost == [], report.text()

    # An archived part the index no longer finds: an error, never a shorter history.
    assert len(await segments_of(ArchiveIndex(db), pid)) == 1
    await forget_index(db, "intent_id = :pid", pid=pid)
    r = await shop.get(f"{INTENT}/{pid}/history")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error", r.text
    shown = subprocess.run([sys.executable, "-m", "paygate_server", "audit", "show", pid],
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 2 and f"history of {pid} is incomplete" in shown.stderr, shown.stderr


async def test_history_is_per_merchant_and_404s(own_gw: InProcessGateway) -> None:
    shop, pid, _ = await _decline_pay_refund(own_gw)
    other = await own_gw.new_merchant()
    missing = f"{INTENT}/pi_doesnotexist00000000000/history"
    for client, path in ((other, f"{INTENT}/{pid}/history"), (shop, missing)):
        r = await client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"


def test_every_captured_table_has_an_event_kind() -> None:
    assert set(OBJECT_KINDS) == set(CAPTURED_TABLES.values())


def test_a_snapshot_missing_a_later_column_still_renders() -> None:
    # An archived row captured before a column existed (here: the attempt's card expiry).
    row = {"id": "txn_1", "intent_id": "pi_1", "merchant_id": "mer_1", "status": "failed", "amount": 5,
           "currency": "EUR", "card_brand": "visa", "card_last4": "0002", "decline_code": "generic_decline",
           "created_at": 1_700_000_000_123_456, "updated_at": 1_700_000_001_000_000}
    change = Change(9, "transaction", "txn_1", "update", "pi_1", "mer_1", 4, json.dumps(row), None,
                    1_700_000_001_000_000)
    assert history_event(change) == {
        "sequence": 4, "type": "attempt.updated", "objectId": "txn_1", "createdAt": "2023-11-14T22:13:21.000Z",
        "data": {"attemptId": "txn_1", "paymentIntentId": "pi_1", "kind": "charge", "status": "failed",
                 "amount": 5, "currency": "EUR",
                 "card": {"brand": "visa", "last4": "0002", "expMonth": None, "expYear": None},
                 "declineCode": "generic_decline", "createdAt": "2023-11-14T22:13:20.123Z",
                 "updatedAt": "2023-11-14T22:13:21.000Z"},
    }


def _paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**os.environ, **env},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r
