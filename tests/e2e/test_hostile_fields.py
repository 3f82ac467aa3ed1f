"""One hostile field in an otherwise valid request, per merchant endpoint (SQLite and PostgreSQL).

tests/e2e/test_hostile_api.py throws whole hostile requests at every route; most of them
are refused by the first check that reads them (an unknown key, a bad amount), so the
fields read after those are rarely reached: a ``productDetails`` holding ``10**30`` was a
500 that fuzz never found. Here every request starts valid — a real intent in the state
the endpoint needs, a real card JWE or token — and exactly ONE field, at the top level or
nested (inside ``productDetails``, ``metadata``, ``paymentDetails``, ``events``; a value, or
a key the client names), is replaced by a hostile JSON value (tests.support.hostile's
``hostile_values``): integers past 64 bits and at every boundary, doubles, booleans, null,
long and control-character text, card numbers as text and as numbers, deep nesting, empty
objects and arrays. For the status and list endpoints the field is a query parameter (the
value as text, or left out for null). The checkout frame's ``POST /checkout/v1/tokens`` is
sent unsigned, as the frame sends it, naming an intent replaced before SPEC §5's 20
tokenizations per clientSecret run out.

Every answer must be:

* 2xx, or a 4xx in SPEC §2's shape with a code of SPEC's list (never 5xx), with no
  traceback and no card number in it (tests.support.hostile.check_answer);
* a refusal wrote nothing: the intent it named, that intent's history, the newest intent
  and the webhook endpoints are as they were;
* a success reads back as it was asked and answered: the created intent through GET intent
  and GET status, a capture's or refund's amount, a webhook endpoint in the list.

Few examples per endpoint in the default suite; ~200 in the slow set (``-m slow``).
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import paygate
from tests.e2e.conftest import Stack
from tests.support.eventually import eventually_sync
from tests.support.hostile import check_answer, hostile_keys, hostile_values
from tests.support.hostile_shop import Shop
from tests.support.slow_set import is_slow_run

pytestmark = pytest.mark.slow

HELD = 5000  # what the capture and refund targets hold
REFUND = 100  # the valid refund's amount
SETTLED = frozenset({"succeeded", "failed", "canceled", "requires_capture"})


@dataclass(frozen=True)
class Key:
    """A path's last step that renames this key (to a hostile name) instead of replacing its value."""
    name: str


Step = str | int | Key
FieldPath = tuple[Step, ...]


@dataclass
class Targets:
    """The shop's real objects in the states the endpoints need, replaced when a valid
    request has used one up."""
    shop: Shop
    created: dict[str, Any]
    token: str
    authorized: dict[str, Any]
    succeeded: dict[str, Any]
    jwks: dict[str, Any]
    tokenizing: dict[str, Any] = field(default_factory=dict)
    tokenizations: int = 0

    def jwe(self) -> str:
        return paygate.encrypt_card(self.jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="731")

    def checkout(self) -> dict[str, Any]:
        """The intent the tokens requests name: a new one before its tokenizations (SPEC §5's
        limit of 20 per clientSecret, refused decryptions included) run out."""
        if not self.tokenizing or self.tokenizations >= 15:
            self.tokenizing, self.tokenizations = self.shop.create_intent(), 0
        self.tokenizations += 1
        return self.tokenizing

    def new_created(self) -> None:
        self.created = self.shop.create_intent()
        r = self.shop.http.post("/checkout/v1/tokens", json={"clientSecret": self.created["clientSecret"],
                                                             "encryptedCard": self.jwe()})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def _paid(self, capture_method: str, status: str) -> dict[str, Any]:
        intent = self.shop.create_intent(amount=HELD, captureMethod=capture_method)
        r = self.shop.call("POST", "/api/v1/payment/process", {
            "paymentIntentId": intent["paymentIntentId"], "paymentMethod": "card",
            "paymentDetails": {"encryptedCard": self.jwe()}})
        assert r.status_code == 200, r.text
        paid = self.shop.settled(intent["paymentIntentId"], SETTLED)
        assert paid["status"] == status, paid
        return paid

    def new_authorized(self) -> None:
        self.authorized = self._paid("manual", "requires_capture")

    def new_succeeded(self) -> None:
        self.succeeded = self._paid("automatic", "succeeded")


@dataclass(frozen=True)
class Case:
    """One endpoint: its valid request (a body, or the query parameters of a GET), the
    fields to make hostile, the intent a refusal must leave as it was, and what a success
    must read back as."""
    method: str
    path: str
    valid: Callable[[Targets], dict[str, Any]]
    fields: tuple[FieldPath, ...]
    target: Callable[[Targets], dict[str, Any]]
    accepted: Callable[[Targets, dict[str, Any], httpx.Response], None]
    signed: bool = True  # the checkout frame's requests are not: its clientSecret is the credential


def _read_back_created(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    answer = r.json()
    assert r.status_code == 201, r.text
    expected = {"amount": sent["amount"], "currency": sent["currency"], "productDetails": sent["productDetails"],
                "merchantId": t.shop.merchant_id, "description": sent.get("description"),
                "metadata": sent.get("metadata") or {}, "captureMethod": sent.get("captureMethod") or "automatic",
                "status": "created", "amountReceived": 0, "amountRefunded": 0}
    assert {k: answer[k] for k in expected} == expected, (sent, answer)
    stored = t.shop.intent(answer["paymentIntentId"])
    assert stored == {k: v for k, v in answer.items() if k != "clientSecret"}, (answer, stored)
    status = t.shop.call("GET", f"/api/v1/payment/status?paymentIntentId={answer['paymentIntentId']}").json()
    assert (status["amount"], status["currency"], status["status"]) == (sent["amount"], sent["currency"], "created")


def _read_back_processed(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    assert r.json()["status"] in {"in_progress", "succeeded"}, r.text
    paid = t.shop.settled(t.created["paymentIntentId"], SETTLED)
    assert (paid["status"], paid["amountReceived"], paid["card"]["last4"]) == ("succeeded", paid["amount"], "4242")
    t.new_created()


def _read_back_captured(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    assert r.json()["status"] in {"in_progress", "succeeded"}, r.text
    captured = t.shop.settled(t.authorized["paymentIntentId"], SETTLED)
    wanted = HELD if sent.get("amount") is None else sent["amount"]
    assert (captured["status"], captured["amountReceived"]) == ("succeeded", wanted), (sent, captured)
    t.new_authorized()


def _read_back_canceled(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    assert r.json()["status"] == "canceled", r.text
    assert t.shop.intent(t.created["paymentIntentId"])["status"] == "canceled"
    t.new_created()


def _read_back_refund(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    answer = r.json()
    before = t.succeeded
    remaining = before["amountReceived"] - before["amountRefunded"]
    wanted = remaining if sent.get("amount") is None else sent["amount"]
    assert (answer["paymentIntentId"], answer["amount"], answer["reason"]) == \
        (before["paymentIntentId"], wanted, sent.get("reason")), (sent, answer)

    def refund() -> dict[str, Any]:
        got = t.shop.call("GET", f"/api/v1/payment/refund/{answer['refundId']}")
        assert got.status_code == 200, got.text
        return dict(got.json())
    done = eventually_sync(refund, until=lambda f: f["status"] in {"succeeded", "failed"}, what="the refund")
    assert {k: done[k] for k in ("paymentIntentId", "amount", "currency", "reason")} == \
        {k: answer[k] for k in ("paymentIntentId", "amount", "currency", "reason")}, (answer, done)
    after = t.shop.intent(before["paymentIntentId"])
    refunded = wanted if done["status"] == "succeeded" else 0
    assert after["amountRefunded"] == before["amountRefunded"] + refunded, (before, after, done)
    t.succeeded = after
    if after["amountReceived"] - after["amountRefunded"] < REFUND:
        t.new_succeeded()


def _read_back_token(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    assert r.status_code == 200 and r.json()["card"]["last4"] == "4242", r.text
    # The token pays for its intent: what was stored is the card that was sent.
    intent_id = t.tokenizing["paymentIntentId"]
    paid = t.shop.call("POST", "/api/v1/payment/process", {
        "paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": {"token": r.json()["token"]}})
    assert paid.status_code == 200, paid.text
    assert t.shop.settled(intent_id, SETTLED)["status"] == "succeeded"
    t.tokenizing = {}


def _read_back_endpoint(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    answer = r.json()
    assert answer["url"] == sent["url"], (sent, answer)
    if sent.get("events") is not None:
        assert set(answer["events"]) == set(sent["events"]), (sent, answer)
    listed = t.shop.call("GET", "/api/v1/webhooks").json()["data"]
    mine = [e for e in listed if e["webhookEndpointId"] == answer["webhookEndpointId"]]
    assert len(mine) == 1 and mine[0]["url"] == answer["url"] and mine[0]["events"] == answer["events"], listed
    # Deleted again: a merchant holds a bounded number of endpoints.
    gone = t.shop.call("DELETE", f"/api/v1/webhooks/{answer['webhookEndpointId']}")
    assert gone.status_code == 204, gone.text


def _read_back_status(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    final = t.shop.final
    assert {k: r.json()[k] for k in ("paymentIntentId", "status", "amount", "currency")} == \
        {k: final[k] for k in ("paymentIntentId", "status", "amount", "currency")}, (sent, r.text)


def _read_back_list(t: Targets, sent: dict[str, Any], r: httpx.Response) -> None:
    page = r.json()
    assert set(page) == {"data", "hasMore"} and isinstance(page["hasMore"], bool), page
    limit = int(sent["limit"]) if sent.get("limit") not in (None, "") else 10
    assert len(page["data"]) <= limit, (sent, len(page["data"]))
    if sent.get("status") not in (None, ""):
        assert all(i["status"] == sent["status"] for i in page["data"]), (sent, page)
    assert all(i["merchantId"] == t.shop.merchant_id for i in page["data"]), page


def _intent_body(t: Targets) -> dict[str, Any]:
    return {"amount": 1999, "currency": "USD", "merchantId": t.shop.merchant_id, "description": "A mug",
            "productDetails": {"sku": "mug-01", "qty": 2, "tags": ["blue"], "dims": {"w": 9}},
            "metadata": {"orderId": "1042"}, "captureMethod": "automatic"}


def _process_body(details: Callable[[Targets], dict[str, Any]]) -> Callable[[Targets], dict[str, Any]]:
    return lambda t: {"paymentIntentId": t.created["paymentIntentId"], "paymentMethod": "card",
                      "paymentDetails": details(t)}


CASES: dict[str, Case] = {
    "intent": Case("POST", "/api/v1/payment/intent", _intent_body, (
        ("amount",), ("currency",), ("productDetails",), ("productDetails", "sku"), ("productDetails", "qty"),
        ("productDetails", "tags", 0), ("productDetails", "dims", "w"), ("productDetails", Key("sku")),
        ("productDetails", "dims", Key("w")), ("merchantId",), ("description",), ("metadata",),
        ("metadata", "orderId"), ("metadata", Key("orderId")), ("captureMethod",)),
        lambda t: t.shop.final, _read_back_created),
    "process-jwe": Case("POST", "/api/v1/payment/process", _process_body(lambda t: {"encryptedCard": t.jwe()}), (
        ("paymentIntentId",), ("paymentMethod",), ("paymentDetails",), ("paymentDetails", "encryptedCard"),
        ("paymentDetails", Key("encryptedCard"))), lambda t: t.created, _read_back_processed),
    "process-token": Case("POST", "/api/v1/payment/process", _process_body(lambda t: {"token": t.token}), (
        ("paymentIntentId",), ("paymentMethod",), ("paymentDetails",), ("paymentDetails", "token"),
        ("paymentDetails", Key("token"))), lambda t: t.created, _read_back_processed),
    "tokens": Case("POST", "/checkout/v1/tokens",
                   lambda t: {"clientSecret": t.checkout()["clientSecret"], "encryptedCard": t.jwe()},
                   (("clientSecret",), ("encryptedCard",), (Key("clientSecret"),), (Key("encryptedCard"),)),
                   lambda t: t.tokenizing, _read_back_token, signed=False),
    "capture": Case("POST", "/api/v1/payment/capture",
                    lambda t: {"paymentIntentId": t.authorized["paymentIntentId"], "amount": 1000},
                    (("paymentIntentId",), ("amount",)), lambda t: t.authorized, _read_back_captured),
    "cancel": Case("POST", "/api/v1/payment/cancel", lambda t: {"paymentIntentId": t.created["paymentIntentId"]},
                   (("paymentIntentId",),), lambda t: t.created, _read_back_canceled),
    "refund": Case("POST", "/api/v1/payment/refund",
                   lambda t: {"paymentIntentId": t.succeeded["paymentIntentId"], "amount": REFUND,
                              "reason": "requested by customer"},
                   (("paymentIntentId",), ("amount",), ("reason",)), lambda t: t.succeeded, _read_back_refund),
    "webhooks": Case("POST", "/api/v1/webhooks",
                     lambda t: {"url": "https://93.184.216.34/hook",
                                "events": ["payment_intent.succeeded", "refund.succeeded"]},
                     (("url",), ("events",), ("events", 0), ("events", 1)), lambda t: t.shop.final,
                     _read_back_endpoint),
    "status": Case("GET", "/api/v1/payment/status",
                   lambda t: {"paymentIntentId": t.shop.final["paymentIntentId"], "wait": "0"},
                   (("paymentIntentId",), ("wait",)), lambda t: t.shop.final, _read_back_status),
    "list": Case("GET", "/api/v1/payment/intents",
                 lambda t: {"limit": "5", "startingAfter": t.shop.final["paymentIntentId"], "status": "canceled"},
                 (("limit",), ("startingAfter",), ("status",)), lambda t: t.shop.final, _read_back_list),
}


def with_hostile(body: dict[str, Any], path: FieldPath, value: Any) -> dict[str, Any]:
    """``body`` with the field at ``path`` replaced by ``value`` (renamed to it, for a :class:`Key`)."""
    out = copy.deepcopy(body)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if isinstance(last, Key):
        parent[value] = parent.pop(last.name)
    else:
        parent[last] = value
    return out


def query_value(value: Any) -> str | None:
    """A hostile JSON value as a query parameter's text: itself if text, its JSON otherwise,
    left out for null; at most 5,000 characters, so that percent-encoded (12 characters for
    one of 4 UTF-8 bytes) it stays within the URL httpx agrees to send (64 Ki characters) —
    past 16 KiB of head the gateway answers 431 before any route runs either way."""
    if value is None:
        return None
    return (value if isinstance(value, str) else json.dumps(value))[:5_000]


@pytest.fixture(scope="module")
def targets(stack: Stack) -> Iterator[Targets]:
    creds = stack.merchant("Hostile Fields Shop")
    # A generous timeout: a hang shows as a ReadTimeout (a failure), not as a slow pass.
    with httpx.Client(base_url=stack.gateway.base_url, timeout=httpx.Timeout(15.0)) as http:
        shop = Shop(http, creds.merchant_id, creds.api_key, creds.signing_secret)
        shop.final = shop.create_intent()
        r = shop.call("POST", "/api/v1/payment/cancel", {"paymentIntentId": shop.final["paymentIntentId"]})
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        shop.final = shop.intent(shop.final["paymentIntentId"])
        jwks = http.get("/checkout/v1/keys").json()
        t = Targets(shop, {}, "", {}, {}, jwks)
        t.new_created()
        t.new_authorized()
        t.new_succeeded()
        yield t


def _examples(request: pytest.FixtureRequest) -> int:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    return 200 if slow else 3


def _written(t: Targets, case: Case) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    intent_id = case.target(t)["paymentIntentId"]
    return t.shop.intent(intent_id), t.shop.history(intent_id), t.shop.newest_intent(), t.shop.endpoints()


def _send(t: Targets, case: Case, sent: dict[str, Any]) -> httpx.Response:
    if case.method == "POST" and not case.signed:
        return t.shop.http.post(case.path, content=json.dumps(sent).encode(),
                                headers={"Content-Type": "application/json"})
    if case.method == "POST":
        return t.shop.call("POST", case.path, sent)
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sent.items() if v is not None)
    return t.shop.call("GET", f"{case.path}?{query}" if query else case.path)


@pytest.mark.parametrize("name", list(CASES))
def test_one_hostile_field(targets: Targets, stack: Stack, request: pytest.FixtureRequest, name: str) -> None:
    case = CASES[name]

    @settings(max_examples=_examples(request), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(case.fields), data=st.data())
    def fuzz(path: FieldPath, data: st.DataObject) -> None:
        hostile = data.draw(hostile_keys if isinstance(path[-1], Key) else hostile_values, label="hostile")
        sent = with_hostile(case.valid(targets), path, hostile)
        if case.method == "GET":
            sent = {k: query_value(v) for k, v in sent.items()}
        before = _written(targets, case)
        response = _send(targets, case, sent)
        error = check_answer(response, response.content)
        event(f"{path} {response.status_code} {error['code'] if error else ''}")
        if error is None:
            case.accepted(targets, sent, response)
        else:
            assert _written(targets, case) == before, (path, response.text[:300])

    fuzz()
    assert "Traceback" not in stack.gateway.output()

