"""Hostile input against every route of a real gateway process (SQLite and PostgreSQL).

The routes are walked from the app itself (``create_app().routes``): a route added without
a plan here fails :func:`test_every_route_has_a_plan`. Each route gets hypothesis-made
requests — bodies with wrong types per field, huge/negative/float/string amounts, unicode
and NUL in ids and currencies, duplicate keys, deep nesting, non-JSON and oversized
bodies, wrong content types, query-string garbage, path ids of every shape, signed
correctly or with broken credentials — and every answer must be:

* below 500, within the client's timeout (no hang), with ``X-Request-Id``;
* for the JSON routes, an error in SPEC §2's shape with a code from SPEC's list;
* free of tracebacks and of card numbers;
* and a refused request wrote nothing: the intent it named is unchanged, no intent or
  webhook endpoint appeared (checked through the API after every refusal).

Few examples per route in the default suite; many in the slow set (``-m slow``). The
gateway's log is scanned for tracebacks (and, by the e2e conftest, for card numbers).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from paygate_server.app import create_app
from paygate_server.config import Settings
from tests.e2e.conftest import Stack
from tests.support.app import TEST_MASTER_KEY
from tests.support.hostile import (
    CARD_NUMBERS,
    bodies,
    check_answer,
    path_ids,
    query_strings,
    served_routes,
    text_values,
)
from tests.support.hostile_shop import Shop
from tests.support.slow_set import is_slow_run

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Plan:
    """How to fuzz one route: its body fields and query parameters, whether requests are
    signed (``/api/v1``), and whether its answers are JSON (errors in SPEC's shape)."""
    fields: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    signed: bool = True
    json_errors: bool = True
    changes_intent: bool = False  # a POST naming the target intent (checked unchanged when refused)


INTENT_FIELDS = ("amount", "currency", "productDetails", "merchantId", "description", "metadata", "captureMethod")
PLANS: dict[tuple[str, str], Plan] = {
    ("POST", "/api/v1/payment/intent"): Plan(fields=INTENT_FIELDS),
    ("GET", "/api/v1/payment/intent/{intent_id}"): Plan(),
    ("GET", "/api/v1/payment/intent/{intent_id}/history"): Plan(),
    ("GET", "/api/v1/payment/intents"): Plan(query=("limit", "startingAfter", "status")),
    ("GET", "/api/v1/payment/status"): Plan(query=("paymentIntentId", "wait")),
    ("GET", "/api/v1/payment/status/stream"): Plan(query=("paymentIntentId",)),
    ("POST", "/api/v1/payment/process"): Plan(fields=("paymentIntentId", "paymentMethod", "paymentDetails"),
                                              changes_intent=True),
    ("POST", "/api/v1/payment/capture"): Plan(fields=("paymentIntentId", "amount"), changes_intent=True),
    ("POST", "/api/v1/payment/cancel"): Plan(fields=("paymentIntentId",), changes_intent=True),
    ("POST", "/api/v1/payment/refund"): Plan(fields=("paymentIntentId", "amount", "reason"), changes_intent=True),
    ("GET", "/api/v1/payment/refund/{refund_id}"): Plan(),
    ("POST", "/api/v1/webhooks"): Plan(fields=("url", "events")),
    ("GET", "/api/v1/webhooks"): Plan(query=("limit", "startingAfter")),
    ("DELETE", "/api/v1/webhooks/{endpoint_id}"): Plan(),
    ("POST", "/processors/v1/{account_id}/webhooks"): Plan(fields=("type", "data", "notificationItems"),
                                                            signed=False),
    ("GET", "/checkout/v1/checkout.js"): Plan(signed=False, json_errors=False),
    ("GET", "/checkout/v1/static/card.js"): Plan(signed=False, json_errors=False),
    ("GET", "/checkout/v1/static/jwe.js"): Plan(signed=False, json_errors=False),
    ("GET", "/checkout/v1/static/frame.js"): Plan(signed=False, json_errors=False),
    ("GET", "/checkout/v1/static/frame.css"): Plan(signed=False, json_errors=False),
    ("GET", "/checkout/v1/keys"): Plan(signed=False),
    ("GET", "/checkout/v1/frame"): Plan(query=("clientSecret",), signed=False, json_errors=False),
    ("POST", "/checkout/v1/tokens"): Plan(fields=("clientSecret", "encryptedCard"), signed=False),
    ("GET", "/checkout/v1/status/stream"): Plan(query=("clientSecret",), signed=False),
    ("GET", "/metrics"): Plan(signed=False, json_errors=False),
    ("GET", "/api/v1/openapi.json"): Plan(signed=False),
    ("GET", "/healthz"): Plan(signed=False),
    ("GET", "/readyz"): Plan(signed=False),
}


def app_routes() -> list[tuple[str, str]]:
    """Every (method, path) the gateway serves, from the app (HEAD is GET's)."""
    return served_routes(create_app(Settings(data_dir=Path("/nonexistent"), database_url="sqlite:///:memory:",
                                             master_key=TEST_MASTER_KEY)))


ROUTES = app_routes()


def test_every_route_has_a_plan() -> None:
    assert sorted(PLANS) == ROUTES, "a route without a fuzzing plan (or a plan for a route that is gone)"


@pytest.fixture(scope="module")
def shop(stack: Stack) -> Iterator[Shop]:
    creds = stack.merchant("Hostile Shop")
    # A generous timeout: a hang shows as a ReadTimeout (a failure), not as a slow pass.
    with httpx.Client(base_url=stack.gateway.base_url, timeout=httpx.Timeout(15.0)) as http:
        s = Shop(http, creds.merchant_id, creds.api_key, creds.signing_secret)
        s.new_target()
        s.final = s.target
        r = s.call("POST", "/api/v1/payment/cancel", {"paymentIntentId": s.final["paymentIntentId"]})
        assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
        s.new_target()
        r = s.call("POST", "/api/v1/webhooks", {"url": "https://93.184.216.34/hook"})
        assert r.status_code == 201, r.text
        s.endpoint_id = r.json()["webhookEndpointId"]
        yield s


def _real_values(shop: Shop, plan: Plan, method: str) -> dict[str, Any]:
    intent = shop.target if plan.changes_intent else shop.final
    values = {"paymentIntentId": intent["paymentIntentId"], "clientSecret": shop.final["clientSecret"],
              "amount": 1999, "currency": "USD", "paymentMethod": "card", "productDetails": {"sku": "mug"},
              "paymentDetails": {"token": "tok_" + "0" * 32}, "url": "https://93.184.216.34/hook",
              "startingAfter": shop.final["paymentIntentId"], "wait": "0", "status": "canceled", "limit": "5"}
    return {k: v for k, v in values.items() if k in plan.fields or k in plan.query}


def _header_value(text: str) -> str:
    """What a client can put in a header: printable ASCII, no surrounding blanks (h11
    refuses to send anything else)."""
    return "".join(c if " " <= c <= "~" else "?" for c in text).strip()


@st.composite
def requests(draw: st.DrawFn, shop: Shop, method: str, path: str) -> tuple[str, bytes, dict[str, str], str]:
    """One hostile request for the route: target, body, headers, and how it is signed."""
    plan = PLANS[(method, path)]
    real = _real_values(shop, plan, method)
    ids = {"intent_id": [shop.final["paymentIntentId"]], "endpoint_id": [shop.endpoint_id],
           "account_id": ["pa_" + "0" * 26], "refund_id": ["re_" + "0" * 26]}
    target = path
    for name, reals in ids.items():
        if "{" + name + "}" in target:
            target = target.replace("{" + name + "}", draw(path_ids(reals)))
    query = draw(query_strings(plan.query, {k: str(v) for k, v in real.items() if k in plan.query}))
    if query:
        target += "?" + query
    body = draw(bodies(plan.fields, {k: v for k, v in real.items() if k in plan.fields})) if method == "POST" \
        else draw(st.sampled_from([b"", b"", b'{"amount": 5}']))
    content_type = draw(st.sampled_from(["application/json", "application/json", "text/plain", "",
                                         "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                         "application/json; charset=latin-1", "application/json\t;;;"]))
    headers = shop.headers(method, target, body) if plan.signed else {}
    auth = draw(st.sampled_from(["signed"] * 6 + ["no auth", "bad key", "bad timestamp", "bad nonce",
                                                   "bad signature", "reused nonce"]))
    header_text = _header_value(draw(text_values))
    if auth == "no auth":
        headers = {}
    elif auth == "bad key":
        headers["Authorization"] = _header_value(draw(st.sampled_from(
            ["Bearer", "Basic x", "Bearer " + header_text, "Bearer pk_test_" + "0" * 24, header_text])))
    elif auth == "bad timestamp":
        headers = shop.headers(method, target, body, timestamp=draw(st.sampled_from(
            ["", "2023-10-15T14:22:31Z", "9999-12-31T23:59:59Z", "0", "2026-13-45T99:99:99Z", header_text])))
    elif auth == "bad nonce":
        headers = shop.headers(method, target, body, nonce=draw(st.sampled_from(
            ["", "short", "x" * 65, "a b c d e f g h i j", "?" * 16, header_text or "-"])))
    elif auth == "bad signature":
        headers["X-Signature"] = draw(st.sampled_from(["", "sha256=", "sha256=" + "0" * 64, "md5=x", header_text]))
    elif auth == "reused nonce":
        headers = shop.headers(method, target, body, nonce="n" * 32)
    headers["Content-Type"] = content_type
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(st.sampled_from(["", "k" * 256, "key with spaces", header_text,
                                                           uuid.uuid4().hex]))
    return target, body, headers, auth if plan.signed else "unsigned"


def _examples(request: pytest.FixtureRequest) -> int:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    return 4 if not slow else 300


def _send(shop: Shop, method: str, target: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    # Streamed, so an event stream that never ends shows as a timeout rather than a hang.
    with shop.http.stream(method, target, content=body, headers=headers) as response:
        data = b"".join(response.iter_bytes())
    return response, data


def _check_answer(plan: Plan, response: httpx.Response, data: bytes, auth: str) -> None:
    """The answer's checks; its status and error code are reported to hypothesis's
    statistics (``--hypothesis-show-statistics``: how deep the requests got)."""
    event(str(response.status_code))
    error = check_answer(response, data, json_errors=plan.json_errors)
    if error is not None:
        event(f"{response.status_code} {error['code']}")
        if auth == "signed":  # verified over the target and the bytes as sent, whatever they are
            assert response.status_code != 401, (response.request.url, error)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_hostile_requests(shop: Shop, stack: Stack, request: pytest.FixtureRequest, method: str, path: str) -> None:
    plan = PLANS[(method, path)]

    @settings(max_examples=_examples(request), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        target, body, headers, auth = data.draw(requests(shop, method, path))
        before = shop.intent(shop.target["paymentIntentId"]) if plan.changes_intent else None
        newest = shop.newest_intent() if path == "/api/v1/payment/intent" else None
        endpoints = shop.endpoints() if path.startswith("/api/v1/webhooks") else None
        response, answer = _send(shop, method, target, body, headers)
        _check_answer(plan, response, answer, auth)
        refused = response.status_code >= 400
        if before is not None:
            after = shop.intent(shop.target["paymentIntentId"])
            if refused:
                assert after == before, (target, body[:300], response.text[:300])
            elif after["status"] != "created":
                shop.new_target()  # a valid cancel: the next example gets a fresh target
        if newest is not None and refused:
            assert shop.newest_intent() == newest, (body[:300], response.text[:300])
        if endpoints is not None and refused:
            assert shop.endpoints() == endpoints, (target, body[:300], response.text[:300])
        if endpoints is not None and shop.endpoint_id not in shop.endpoints():
            r = shop.call("POST", "/api/v1/webhooks", {"url": "https://93.184.216.34/hook"})
            shop.endpoint_id = r.json()["webhookEndpointId"]

    fuzz()
    assert "Traceback" not in stack.gateway.output()


def test_a_card_number_anywhere_is_refused_and_never_stored(shop: Shop) -> None:
    """Regression guard for the echo check itself: a card number in a field the API would
    otherwise store is refused with plaintext_card_data, and not echoed."""
    for number in CARD_NUMBERS:
        r = shop.call("POST", "/api/v1/payment/intent", {"amount": 5, "currency": "USD",
                                                         "productDetails": {"note": number}})
        assert r.status_code == 400 and r.json()["error"]["code"] == "plaintext_card_data", r.text
        assert number not in r.text
