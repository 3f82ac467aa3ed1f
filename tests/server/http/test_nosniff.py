"""Every answer of the gateway carries ``X-Content-Type-Options: nosniff`` exactly once:
API JSON and its errors, the checkout's keys, tokens and status stream, unknown routes, and
the answers of pages that set their own security headers (the frame, checkout.js)."""
from __future__ import annotations

import httpx

from tests.support.app import InProcessGateway


def _nosniff(response: httpx.Response) -> list[str]:
    return response.headers.get_list("x-content-type-options")


async def test_every_kind_of_answer_says_nosniff_once(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant(origins=["https://shop.example"])
    intent = await shop.create_intent()
    secret = intent["clientSecret"]
    answers = {
        "api": await shop.post("/api/v1/payment/cancel", {"paymentIntentId": intent["paymentIntentId"]}),
        "api error": await shop.post("/api/v1/payment/cancel", {"paymentIntentId": "pi_nope"}),
        "unsigned": await gw.http.post("/api/v1/payment/intent", json={}),
        "keys": await gw.http.get("/checkout/v1/keys"),
        "tokens error": await gw.http.post("/checkout/v1/tokens", json={"clientSecret": secret}),
        "stream": await gw.http.get("/checkout/v1/status/stream", params={"clientSecret": secret}),
        "frame": await gw.http.get("/checkout/v1/frame", params={"clientSecret": secret}),
        "script": await gw.http.get("/checkout/v1/checkout.js"),
        "no route": await gw.http.get("/nowhere"),
    }
    assert {name: _nosniff(r) for name, r in answers.items()} == {name: ["nosniff"] for name in answers}
    assert answers["keys"].status_code == 200 and answers["tokens error"].status_code == 400
