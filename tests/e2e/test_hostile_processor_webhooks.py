"""Hostile input against ``POST /processors/v1/{processorAccountId}/webhooks`` (SPEC §7) for
merchants with real Stripe and Adyen accounts, through a real gateway process (SQLite and
PostgreSQL). tests/e2e/test_hostile_api.py reaches this route with unknown accounts only;
here the signature checks are fuzzed (``Stripe-Signature`` headers of every shape,
cross-checked with the official ``stripe`` library; Adyen items' ``hmacSignature``), and —
past a correct signature, made in the test with the account's secret — events and items
with wrong types at every level, missing fields, unknown event types, references of
nothing or of the other merchant's account, amounts of every type and size, currency
garbage, card numbers in every field, and events out of order about real operations
(a refund's failure after its success, a capture for an authorization never captured,
replays).

Every answer must be: below 500; what the processor expects once verified (Stripe: ``200
{"received":true}``, Adyen: ``200 [accepted]``) and SPEC §2's ``400 parameter_invalid``
otherwise (``413`` past the route's size limit) — which, decided by the test from what it
sent; free of tracebacks and card numbers. Nothing changes: every operation of both
merchants is as it was (the only unsettled ones are each shop's answer-lost charge at
Adyen and at Stripe, and what the fuzz sends about them never states their money right),
except that a contradiction of a settled operation of the notified account may be
recorded for the operator (``late_outcomes``). Ids the gateway cannot keep name nothing.
At the end valid notifications settle the answer-lost charges (the state check can see a
change), and no card number is anywhere in the clear (the gateway's log is scanned by the
e2e conftest). A few examples by default; many with ``-m slow``.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from Adyen import util as adyen_util
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

import paygate
from paygate._signing import compute_signature, format_timestamp
from paygate_server.crypto import MasterKey
from paygate_server.processors.accounts import add_account, set_routing
from paygate_server.storage import Database, create_database
from paygate_server.storage.statements import Sql, fetch_all
from tests.e2e.conftest import Stack, running_stack
from tests.support.app import TEST_MASTER_KEY
from tests.support.background_loop import BackgroundLoop
from tests.support.fake_adyen import LOST, FakeAdyen
from tests.support.hostile import CARD_NUMBERS, assert_no_leak, assert_spec_error
from tests.support.hostile_processors import (
    ADYEN_ACCOUNTS,
    ADYEN_KEYS,
    STRIPE_SECRETS,
    adyen_bodies,
    stripe_events,
    stripe_expects_200,
    stripe_headers,
    stripe_lib_accepts,
    stripe_sign,
    utf8,
)
from tests.support.http_stub import StubServer
from tests.support.localstripe import SECRET_KEY, enter_localstripe
from tests.support.secret_scan import places_holding
from tests.support.slow_set import is_slow_run
from tests.support.tcp_proxy import DroppingProxy

APPROVE = "4242424242424242"
_STATE = {
    "transactions": Sql("SELECT id, status, processor_id, auth_code, decline_code, error_code, error_message"
                        " FROM transactions WHERE merchant_id = :merchant_id ORDER BY id"),
    "refunds": Sql("SELECT id, status, reason, error_code, failure_reason FROM refunds"
                   " WHERE merchant_id = :merchant_id ORDER BY id"),
    "intents": Sql("SELECT id, status, amount_received, amount_capturable, amount_refunded FROM payment_intents"
                   " WHERE merchant_id = :merchant_id ORDER BY id"),
}
_LATE = Sql("SELECT kind, object_id, connector FROM late_outcomes WHERE merchant_id = :merchant_id")
_OPERATIONS = Sql("SELECT t.kind, t.status, t.reference, t.processor_id, t.connector, t.amount, t.currency"
                  " FROM transactions t WHERE t.merchant_id = :merchant_id"
                  " UNION ALL SELECT 'refund', r.status, r.reference, NULL, t.connector, r.amount, r.currency"
                  " FROM refunds r JOIN transactions t ON t.id = r.transaction_id WHERE r.merchant_id = :merchant_id")


@dataclass
class Merchant:
    name: str
    merchant_id: str
    api_key: str
    secret: str
    stripe: str = ""  # processor account ids
    adyen: str = ""
    operations: list[dict[str, Any]] = field(default_factory=list)
    lost: dict[str, dict[str, Any]] = field(default_factory=dict)  # "stripe"/"adyen": a charge left unknown


@dataclass
class World:
    stack: Stack
    http: httpx.Client
    loop: BackgroundLoop
    db: Database  # the test's own connection to the gateway's database, on ``loop``
    shops: dict[str, Merchant]

    def rows(self, sql: Sql, merchant: Merchant) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            async with self.db.read() as conn:
                return [dict(r) for r in await fetch_all(conn, sql, merchant_id=merchant.merchant_id)]
        return self.loop.run(read())

    def operations(self) -> dict[str, list[dict[str, Any]]]:
        return {name: shop.operations for name, shop in self.shops.items()}

    def state(self) -> dict[str, Any]:
        return {(name, what): self.rows(sql, shop) for name, shop in self.shops.items() for what, sql in _STATE.items()}

    def late(self) -> dict[str, list[tuple[str, str, str]]]:
        return {name: sorted((r["kind"], r["object_id"], r["connector"]) for r in self.rows(_LATE, shop))
                for name, shop in self.shops.items()}


def _call(http: httpx.Client, shop: Merchant, method: str, target: str, body: Any = None) -> httpx.Response:
    raw = b"" if body is None else json.dumps(body).encode()
    timestamp, nonce = format_timestamp(), uuid.uuid4().hex
    return http.request(method, target, content=raw, headers={
        "Authorization": f"Bearer {shop.api_key}", "X-Request-Timestamp": timestamp, "X-Request-Nonce": nonce,
        "Content-Type": "application/json",
        "X-Signature": compute_signature(shop.secret, method, target, timestamp, nonce, raw)})


def _pay(http: httpx.Client, shop: Merchant, amount: int, currency: str, number: str = APPROVE,
         **intent: Any) -> dict[str, Any]:
    created = _call(http, shop, "POST", "/api/v1/payment/intent",
                    {"amount": amount, "currency": currency, "productDetails": {"sku": "mug"}, **intent})
    assert created.status_code == 201, created.text
    pid = created.json()["paymentIntentId"]
    jwe = paygate.encrypt_card(http.get("/checkout/v1/keys").json(), number=number, exp_month=12, exp_year=2034,
                               cvc="123")
    paid = _call(http, shop, "POST", "/api/v1/payment/process",
                 {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
    assert paid.status_code == 200, paid.text
    return dict(paid.json())


def _set_up(stack: Stack, loop: BackgroundLoop, stripe_url: str, http: httpx.Client, db: Database) -> World:
    master = MasterKey(bytes.fromhex(TEST_MASTER_KEY))
    fakes = {name: FakeAdyen(ADYEN_ACCOUNTS[name], ADYEN_KEYS[name]) for name in ("A", "B")}
    stubs = {name: loop.enter(StubServer(fake.handler)) for name, fake in fakes.items()}
    world = World(stack, http, loop, db, {})
    host, port = stripe_url.removeprefix("http://").split(":")
    proxies: list[DroppingProxy] = []
    for name in ("A", "B"):
        creds = stack.merchant(f"Hostile processor shop {name}")
        shop = Merchant(name, creds.merchant_id, creds.api_key, creds.signing_secret)

        # Stripe through a proxy that, once told to, loses every answer from the next confirm
        # on (its own, and the reconciler's look-ups); closed at the end of the set-up.
        dropping = {"on": False, "lost": False}

        def lose(data: bytes, dropping: dict[str, bool] = dropping) -> bool:
            dropping["lost"] = dropping["lost"] or (dropping["on"] and b"/confirm HTTP/1.1" in data)
            return dropping["lost"]

        proxy = DroppingProxy(host, int(port), lose)
        proxies.append(proxy)
        stripe_base = loop.run(proxy.start())

        async def accounts(shop: Merchant = shop, name: str = name, stripe_base: str = stripe_base) -> None:
            shop.stripe = (await add_account(db, master, merchant_id=shop.merchant_id, kind="stripe",
                                             name="Stripe", settings={"apiBase": stripe_base},
                                             credentials={"secretKey": SECRET_KEY,
                                                          "webhookSecret": STRIPE_SECRETS[name]})).id
            shop.adyen = (await add_account(db, master, merchant_id=shop.merchant_id, kind="adyen", name="Adyen",
                                            settings={"apiBase": stubs[name].url,
                                                      "merchantAccount": ADYEN_ACCOUNTS[name]},
                                            credentials={"apiKey": "test-api-key", "hmacKey": ADYEN_KEYS[name]})).id
            await set_routing(db, merchant_id=shop.merchant_id, document=[
                {"when": {"currency": ["EUR"]}, "use": [shop.adyen]}, {"use": [shop.stripe]}])

        loop.run(accounts())
        # Stripe: a charge refunded in part; an authorization held (never captured).
        charged = _pay(http, shop, 2500, "USD")
        assert charged["status"] == "succeeded", charged
        refund = _call(http, shop, "POST", "/api/v1/payment/refund",
                       {"paymentIntentId": charged["paymentIntentId"], "amount": 500})
        assert refund.status_code == 200 and refund.json()["status"] == "succeeded", refund.text
        held = _pay(http, shop, 3000, "USD", captureMethod="manual")
        assert held["status"] == "requires_capture", held
        dropping["on"] = True  # a charge Stripe makes but whose answers (look-ups too) are lost: unknown
        assert _pay(http, shop, 2700, "USD")["status"] == "in_progress"
        # Adyen: a charge whose answer is lost (its attempt stays unknown: Adyen answers no
        # look-up), first, on a new connection (a keep-alive one closed unanswered is one the
        # pool may try again, and the fake answers a retry), and a charge.
        assert _pay(http, shop, 4100, "EUR", LOST)["status"] == "in_progress"
        assert _pay(http, shop, 4000, "EUR")["status"] == "succeeded"
        fakes[name].queued.clear()  # the LOST one's AUTHORISATION is never delivered
        world.shops[name] = shop
    for proxy in proxies:
        loop.run(proxy.close())
    for shop in world.shops.values():
        shop.operations = world.rows(_OPERATIONS, shop)
        shop.lost = {kind: next(r for r in shop.operations if r["status"] == "unknown" and r["connector"] == account)
                     for kind, account in (("stripe", shop.stripe), ("adyen", shop.adyen))}
    return world


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir: Path = tmp_path_factory.mktemp("hostile-processors")
    with contextlib.ExitStack() as stack_:
        stripe_url = enter_localstripe(stack_, data_dir)
        stack = stack_.enter_context(running_stack(database_url, data_dir))
        loop = stack_.enter_context(BackgroundLoop())
        http = stack_.enter_context(httpx.Client(base_url=stack.gateway.base_url, timeout=httpx.Timeout(15.0)))
        db = create_database(stack.database_url)
        stack_.callback(lambda: loop.run(db.dispose()))
        yield _set_up(stack, loop, stripe_url, http, db)


def _examples(request: pytest.FixtureRequest, default: int) -> int:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    return 300 if slow else default


_SETTINGS = {"deadline": None, "database": None,
             "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}


def _post(world: World, target: str, body: bytes, headers: list[tuple[str, bytes]]) -> httpx.Response:
    return world.http.post(target, content=body, headers=headers)


def _check(world: World, response: httpx.Response, sent: bytes, expected: str | int,
           before: dict[str, Any], late_before: dict[str, list[tuple[str, str, str]]], account: str, own: str) -> None:
    """The answer's and the state's checks. ``expected``: "stripe" or "adyen" (the
    processor's acknowledgement), or a status code (an error in SPEC's shape)."""
    assert response.status_code < 500, (response.status_code, response.text[:500], sent[:500])
    assert response.headers.get("x-request-id"), response.headers
    assert_no_leak(response.text)
    if currently_in_test_context():  # (statistics for --hypothesis-show-statistics)
        event(f"{response.status_code}")
    if expected == "stripe":
        assert (response.status_code, response.content) == (200, b'{"received":true}'), (response.text, sent[:500])
        assert response.headers["content-type"].startswith("application/json")
    elif expected == "adyen":
        assert (response.status_code, response.text) == (200, "[accepted]"), (response.text, sent[:500])
    else:
        assert response.status_code == expected, (response.status_code, response.text, sent[:500])
        assert_spec_error(response.status_code, response.content, response.headers["x-request-id"])
    assert world.state() == before, sent[:500]
    late = world.late()
    for name, rows in late.items():
        added = set(rows) - set(late_before[name])
        # A contradiction of a settled operation is recorded, for the notified account's own only.
        assert not added or (name == own and {c for _, _, c in added} == {account}), (added, sent[:500])


def _stripe_target(world: World, own: str) -> str:
    return f"/processors/v1/{world.shops[own].stripe}/webhooks"


@pytest.mark.slow  # many more examples with -m slow
def test_signed_hostile_stripe_events(world: World, request: pytest.FixtureRequest) -> None:
    @settings(max_examples=_examples(request, 8), **_SETTINGS)  # type: ignore[arg-type]
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        own = data.draw(st.sampled_from(["A", "B"]))
        body, why = data.draw(stripe_events(world.operations(), own))
        event(why.split()[0])
        now = int(time.time())
        header = f"t={now},v1={stripe_sign(STRIPE_SECRETS[own], now, body)}"
        if data.draw(st.booleans()):  # a secret being rolled: another v1 beside it, either side
            other = f"v1={stripe_sign('whsec_old', now, body)}"
            header = data.draw(st.sampled_from([f"{header},{other}", f"{other},{header}"]))
        if utf8(body):  # (the library verifies text)
            assert stripe_lib_accepts(body, header, STRIPE_SECRETS[own]), header  # signed as Stripe signs
        before, late_before = world.state(), world.late()
        response = _post(world, _stripe_target(world, own), body,
                         [("Stripe-Signature", header.encode()), ("Content-Type", b"application/json")])
        expected: str | int = 413 if len(body) > 256 * 1024 else "stripe" if stripe_expects_200(body) else 400
        _check(world, response, body, expected, before, late_before, world.shops[own].stripe, own)

    fuzz()
    assert "Traceback" not in world.stack.gateway.output()


@pytest.mark.slow  # many more examples with -m slow
def test_hostile_stripe_signatures(world: World, request: pytest.FixtureRequest) -> None:
    """Only a header that signs the body under the account's secret passes; the verdict is
    the official library's wherever its rules are the gateway's (it checks no future
    timestamp and takes any number of v1)."""
    named = world.shops["A"].operations[0]
    valid_body = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": named["processor_id"], "status": "succeeded", "metadata": {"paygate_reference": named["reference"]},
        "amount": named["amount"], "currency": "usd", "latest_charge": "ch_1"}}}).encode()

    @settings(max_examples=_examples(request, 8), **_SETTINGS)  # type: ignore[arg-type]
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        body = data.draw(st.sampled_from([valid_body, b"", b"not json", b"\xff" * 10]) | st.binary(max_size=100))
        headers, shape = data.draw(stripe_headers(body, STRIPE_SECRETS["A"]))
        event(shape)
        before, late_before = world.state(), world.late()
        response = _post(world, _stripe_target(world, "A"), body, headers)
        last = [v for k, v in headers if k == "Stripe-Signature"]
        lib = bool(last) and stripe_lib_accepts(body, last[-1].decode("utf-8", "replace"), STRIPE_SECRETS["A"])
        ours = shape in ("many v1", "duplicate", "t twice") or (shape == "spaces" and lib)
        if shape not in ("future", "too many v1", "t twice", "spaces") and utf8(body):
            assert lib == ours, (shape, last)  # the same verdict as Stripe's library
        expected: str | int = ("stripe" if stripe_expects_200(body) else 400) if ours else 400
        _check(world, response, body, expected, before, late_before, world.shops["A"].stripe, "A")

    fuzz()
    assert "Traceback" not in world.stack.gateway.output()


@pytest.mark.slow  # many more examples with -m slow
def test_signed_hostile_adyen_notifications(world: World, request: pytest.FixtureRequest) -> None:
    @settings(max_examples=_examples(request, 8), **_SETTINGS)  # type: ignore[arg-type]
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        own = data.draw(st.sampled_from(["A", "B"]))
        body, expected, why = data.draw(adyen_bodies(world.operations(), own))
        event(f"{expected}")
        before, late_before = world.state(), world.late()
        response = _post(world, f"/processors/v1/{world.shops[own].adyen}/webhooks", body,
                         [("Content-Type", b"application/json")])
        _check(world, response, body, expected, before, late_before, world.shops[own].adyen, own)

    fuzz()
    assert "Traceback" not in world.stack.gateway.output()


def test_out_of_order_and_replayed_notifications_change_nothing_settled(world: World) -> None:
    """Real operations, told out of order: a refund's failure after its success, a capture
    of an authorization never captured, a cancel of a charge already succeeded; each twice."""
    shop = world.shops["A"]
    by_kind = {(r["kind"], r["connector"]): r for r in shop.operations}
    charge = next(r for r in shop.operations if r["kind"] == "charge" and r["connector"] == shop.stripe)
    refund = by_kind[("refund", shop.stripe)]
    auth = by_kind[("authorization", shop.stripe)]
    now = int(time.time())
    events = [
        {"type": "refund.failed", "data": {"object": {"id": "re_x", "object": "refund", "status": "failed",
                                                      "amount": refund["amount"], "currency": "usd",
                                                      "metadata": {"paygate_reference": refund["reference"]},
                                                      "payment_intent": charge["processor_id"]}}},
        {"type": "payment_intent.succeeded", "data": {"object": {
            "id": auth["processor_id"], "status": "succeeded", "capture_method": "manual", "amount": auth["amount"],
            "amount_received": auth["amount"], "currency": "usd",
            "metadata": {"paygate_reference": auth["reference"], "paygate_capture": "cap_" + "0" * 20}}}},
        {"type": "payment_intent.canceled", "data": {"object": {
            "id": charge["processor_id"], "status": "canceled", "cancellation_reason": "requested_by_customer",
            "metadata": {"paygate_reference": charge["reference"], "paygate_void": charge["reference"]}}}},
    ]
    for doc in events * 2:
        body = json.dumps(doc).encode()
        header = f"t={now},v1={stripe_sign(STRIPE_SECRETS['A'], now, body)}"
        before, late_before = world.state(), world.late()
        response = _post(world, _stripe_target(world, "A"), body, [("Stripe-Signature", header.encode())])
        _check(world, response, body, "stripe", before, late_before, shop.stripe, "A")
    # The refund's contradiction is recorded once, for the operator.
    assert [(k, c) for k, _, c in world.late()["A"] if k == "refund"] == [("refund", shop.stripe)]


def _adyen_item(name: str, reference: str, amount: int, currency: str, **fields: Any) -> dict[str, Any]:
    item = {"pspReference": "8815999900000001", "originalReference": "", "merchantAccountCode": ADYEN_ACCOUNTS[name],
            "merchantReference": reference, "amount": {"value": amount, "currency": currency},
            "eventCode": "AUTHORISATION", "success": "true", "reason": "", "eventDate": "2026-12-03T10:00:00+01:00",
            **fields}
    extra = item.pop("additionalData", {})
    signature = adyen_util.generate_notification_sig(copy.deepcopy({**item, "additionalData": {}}), ADYEN_KEYS[name])
    return {**item, "additionalData": {**extra, "hmacSignature": signature.decode()}}


def _adyen_post(world: World, name: str, *items: dict[str, Any]) -> httpx.Response:
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]}).encode()
    return _post(world, f"/processors/v1/{world.shops[name].adyen}/webhooks", body,
                 [("Content-Type", b"application/json")])


def _stripe_succeeded(lost: dict[str, Any], *, kind: str = "payment_intent.succeeded", **fields: Any) -> bytes:
    """Stripe's event for the charge ``lost`` (a transaction row) succeeding, with ``fields``."""
    return json.dumps({"id": "evt_" + uuid.uuid4().hex, "type": kind, "data": {"object": {
        "id": lost["processor_id"], "object": "payment_intent", "status": "succeeded", "capture_method": "automatic",
        "amount": lost["amount"], "amount_received": lost["amount"], "currency": lost["currency"].lower(),
        "latest_charge": "ch_lost", "metadata": {"paygate_reference": lost["reference"]}, **fields}}}).encode()


def _stripe_post(world: World, name: str, body: bytes) -> httpx.Response:
    now = int(time.time())
    header = f"t={now},v1={stripe_sign(STRIPE_SECRETS[name], now, body)}"
    return _post(world, _stripe_target(world, name), body, [("Stripe-Signature", header.encode())])


@pytest.mark.parametrize("psp", ["8815" * 40, "8815\x00", "\x00", "é" * 129])
def test_ids_no_operation_can_have_name_none(world: World, psp: str) -> None:
    """Ids the gateway never gave or stored (longer than its columns, or with NUL, which
    PostgreSQL's text cannot hold) name no operation, as references and as the processor's
    ids; an answer-lost authorization is not settled with an id it could never be found by."""
    shop = world.shops["A"]
    before, late_before = world.state(), world.late()
    for named in (None, shop.lost["adyen"]):
        lost = shop.lost["adyen"]
        response = _adyen_post(world, "A", _adyen_item("A", psp if named is None else named["reference"],
                                                      lost["amount"], lost["currency"],
                                                      pspReference=psp, originalReference=psp))
        _check(world, response, b"", "adyen", before, late_before, shop.adyen, "A")
    for named in (None, shop.lost["stripe"]):
        for kind in ("payment_intent.succeeded", "refund.updated"):
            body = _stripe_succeeded(shop.lost["stripe"], kind=kind, id=psp, payment_intent=psp,
                                     metadata={"paygate_reference": psp if named is None else named["reference"]})
            _check(world, _stripe_post(world, "A", body), body, "stripe", before, late_before, shop.stripe, "A")
    assert "Traceback" not in world.stack.gateway.output()


def test_a_signed_amount_beyond_64_bits_is_read_exactly_and_applied_to_nothing(world: World) -> None:
    """An integer beyond 64 bits is read as the integer it is, not as a float (the slow
    set's Adyen fuzz found a signed item with ``10**30`` refused as unverifiable: its
    signature covers the digits, and a float no longer printed them). Verified, so
    acknowledged; an amount no processor can state names no outcome, so nothing changes."""
    shop = world.shops["A"]
    before, late_before = world.state(), world.late()
    for value in (2**64, 10**30, -(2**63) - 1):
        lost = shop.lost["adyen"]
        response = _adyen_post(world, "A", _adyen_item("A", lost["reference"], value, lost["currency"]))
        _check(world, response, b"", "adyen", before, late_before, shop.adyen, "A")
        body = _stripe_succeeded(shop.lost["stripe"], amount=value, amount_received=value)
        _check(world, _stripe_post(world, "A", body), body, "stripe", before, late_before, shop.stripe, "A")


def test_a_valid_notification_still_settles_and_no_card_number_is_stored(world: World) -> None:
    """The positive control: the state checks above can see a change. The answer-lost
    charge of each shop at Adyen and at Stripe is settled by its own notification; the Adyen one's
    authCode (unsigned, longer than the gateway keeps: a 500 on PostgreSQL) is left out."""
    for name, shop in world.shops.items():
        lost = shop.lost["adyen"]
        item = _adyen_item(name, lost["reference"], lost["amount"], lost["currency"],
                           additionalData={"authCode": "A" * 40})
        response = _adyen_post(world, name, item)
        assert (response.status_code, response.text) == (200, "[accepted]")
        lost = shop.lost["stripe"]
        body = _stripe_succeeded(lost)
        assert _stripe_post(world, name, body).status_code == 200
        rows = {r["reference"]: r for r in world.rows(_OPERATIONS, shop)}
        assert rows[shop.lost["adyen"]["reference"]]["status"] == rows[lost["reference"]]["status"] == "succeeded"
        auth_codes = {r["processor_id"]: r["auth_code"] for r in world.rows(_STATE["transactions"], shop)}
        assert auth_codes["8815999900000001"] is None  # longer than the gateway keeps: left out
        assert auth_codes[lost["processor_id"]] == "ch_lost"
    numbers = {n for number in CARD_NUMBERS for n in (number, number.replace(" ", "").replace("-", ""))}
    assert asyncio.run(places_holding(numbers, data_dir=world.stack.data_dir,
                                      database_url=world.stack.database_url)) == []
