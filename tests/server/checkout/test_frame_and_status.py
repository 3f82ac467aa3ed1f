"""The checkout's pages on the real gateway app: checkout.js, the frame (context from the
intent, CSP frame-ancestors from the merchant's origins), and the status stream."""
from __future__ import annotations

import json
import re
from typing import Any

from paygate_server.checkout.tokens import MAX_TOKENIZATIONS
from tests.server.checkout.helpers import encrypt
from tests.support.app import InProcessGateway

SHOP_ORIGINS = ["https://shop.example", "http://localhost:5173"]


def _config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="paygate-config">(.*?)</script>', html, re.DOTALL)
    assert match is not None
    return json.loads(match.group(1))


def _csp(response: Any) -> dict[str, str]:
    policy = {}
    for directive in response.headers["content-security-policy"].split(";"):
        name, _, value = directive.strip().partition(" ")
        policy[name] = value
    return policy


async def test_checkout_js_and_static_files(gw: InProcessGateway) -> None:
    r = await gw.http.get("/checkout/v1/checkout.js")
    assert r.status_code == 200 and "Paygate" in r.text
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-request-id"].startswith("req_")
    for name in ("frame.js", "card.js", "jwe.js", "frame.css"):
        assert (await gw.http.get(f"/checkout/v1/static/{name}")).status_code == 200
    assert (await gw.http.get("/checkout/v1/static/../app.py")).status_code == 404
    keys = (await gw.http.get("/checkout/v1/keys")).json()
    assert keys["keys"] and keys["keys"][0]["alg"] == "RSA-OAEP-256"


async def test_frame_shows_the_intent_and_allows_only_the_merchants_origins(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(name="Acme & Co <Coffee>", origins=SHOP_ORIGINS)
    intent = await shop.create_intent(amount=1999, currency="EUR", description="Order 1042")
    r = await gw.http.get("/checkout/v1/frame", params={
        "clientSecret": intent["clientSecret"], "parentOrigin": "http://localhost:5173"})
    assert r.status_code == 200
    assert "Acme &amp; Co &lt;Coffee&gt;" in r.text and "€19.99" in r.text and "Order 1042" in r.text
    assert "Test mode" in r.text
    csp = _csp(r)
    assert set(csp["frame-ancestors"].split()) == set(SHOP_ORIGINS)
    assert csp["script-src"] == "'self'" and csp["default-src"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "set-cookie" not in r.headers
    assert _config(r.text)["merchantOrigin"] == "http://localhost:5173"
    # A parent that claims an unregistered origin gets the first registered one as target.
    r = await gw.http.get("/checkout/v1/frame", params={
        "clientSecret": intent["clientSecret"], "parentOrigin": "https://evil.example"})
    assert _config(r.text)["merchantOrigin"] in SHOP_ORIGINS and "evil" not in r.text


async def test_the_frame_of_a_manual_capture_says_authorize(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(origins=SHOP_ORIGINS)
    for method, label in (("manual", "Authorize €19.99"), ("automatic", "Pay €19.99")):
        intent = await shop.create_intent(amount=1999, currency="EUR", captureMethod=method)
        r = await gw.http.get("/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
        assert r.status_code == 200 and _config(r.text)["submitLabel"] == label
        assert ("pg-hold-note" in r.text) == (method == "manual")


async def test_frame_for_unknown_or_finished_checkouts(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(origins=SHOP_ORIGINS)
    for secret in ("pi_nope_secret_nope", "", "x" * 400):
        r = await gw.http.get("/checkout/v1/frame", params={"clientSecret": secret})
        assert r.status_code == 404
        assert _csp(r)["frame-ancestors"] == "'none'"
    intent = await shop.create_intent()
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"]})
    r = await gw.http.get("/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
    assert r.status_code == 409 and "canceled" in r.text and 'id="pg-number"' not in r.text
    assert set(_csp(r)["frame-ancestors"].split()) == set(SHOP_ORIGINS)  # the shop shows the message


async def test_frame_after_the_tokenization_limit(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(origins=SHOP_ORIGINS)
    intent = await shop.create_intent()
    jwe = encrypt(gw)
    for _ in range(MAX_TOKENIZATIONS):
        r = await gw.http.post("/checkout/v1/tokens", json={"clientSecret": intent["clientSecret"], "encryptedCard": jwe})
        assert r.status_code == 200
    r = await gw.http.get("/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
    assert r.status_code == 429 and "Too many attempts" in r.text


async def test_status_stream_by_client_secret(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(origins=SHOP_ORIGINS)
    intent = await shop.create_intent()
    r = await gw.http.get("/checkout/v1/status/stream", params={"clientSecret": "pi_nope_secret_nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    assert r.json()["error"]["requestId"] == r.headers["x-request-id"]
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"]})
    # A final intent: one event, then the stream ends.
    r = await gw.http.get("/checkout/v1/status/stream", params={"clientSecret": intent["clientSecret"]},
                          headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    events = [block for block in r.text.split("\n\n") if block.strip()]
    assert len(events) == 1
    assert "event: status" in events[0] and '"status":"canceled"' in events[0]
    assert f"id: {intent['paymentIntentId']}:" in events[0]
    r = await gw.http.get("/checkout/v1/status/stream", params={"clientSecret": intent["clientSecret"]},
                          headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
