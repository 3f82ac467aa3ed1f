"""Payment intents over the signed API, on SQLite and PostgreSQL (SPEC §4)."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.app import InProcessGateway
from tests.support.eventually import eventually

INTENT = "/api/v1/payment/intent"


def _body(**overrides: Any) -> dict[str, Any]:
    return {"amount": 1999, "currency": "USD", "productDetails": {"sku": "mug-01", "name": "Mug"}, **overrides}


async def test_create_get_and_render(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, _body(description="A mug", metadata={"orderId": "1042"}))
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"].startswith("req_")
    intent = r.json()
    assert intent["paymentIntentId"].startswith("pi_")
    assert len(intent["paymentIntentId"]) >= 3 + 26  # ≥ 128 bits of base32
    assert intent["merchantId"] == shop.creds.merchant_id
    assert intent["status"] == "created"
    assert (intent["amount"], intent["currency"], intent["amountRefunded"]) == (1999, "USD", 0)
    assert intent["metadata"] == {"orderId": "1042"}
    assert intent["productDetails"] == {"sku": "mug-01", "name": "Mug"}
    assert intent["clientSecret"].startswith(intent["paymentIntentId"] + "_secret_")
    assert intent["lastError"] is None and intent["card"] is None
    assert intent["createdAt"].endswith("Z")

    got = await shop.get(f"{INTENT}/{intent['paymentIntentId']}")
    assert got.status_code == 200
    assert "clientSecret" not in got.json()
    assert {k: v for k, v in intent.items() if k != "clientSecret"} == got.json()


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        (_body(amount=0), "parameter_invalid", "amount"),
        (_body(amount=100_000_000), "parameter_invalid", "amount"),
        (_body(amount=19.99), "parameter_invalid", "amount"),
        (_body(amount="1999"), "parameter_invalid", "amount"),
        (_body(amount=True), "parameter_invalid", "amount"),
        ({"currency": "USD", "productDetails": {}}, "parameter_missing", "amount"),
        (_body(currency="usd"), "parameter_invalid", "currency"),
        (_body(currency="XYZ"), "parameter_invalid", "currency"),
        ({"amount": 5, "currency": "USD"}, "parameter_missing", "productDetails"),
        (_body(productDetails=[1, 2]), "parameter_invalid", "productDetails"),
        (_body(productDetails={"blob": "x" * 9000}), "parameter_invalid", "productDetails"),
        (_body(metadata={f"k{i}": "v" for i in range(21)}), "parameter_invalid", "metadata"),
        (_body(metadata={"k" * 41: "v"}), "parameter_invalid", "metadata"),
        (_body(metadata={"k": "v" * 501}), "parameter_invalid", "metadata"),
        (_body(metadata={"k": 5}), "parameter_invalid", "metadata"),
        (_body(status="succeeded"), "parameter_invalid", "status"),
        (_body(amountRefunded=5), "parameter_invalid", "amountRefunded"),
        (_body(merchantId="mer_someoneelse000000000000"), "parameter_invalid", "merchantId"),
        (_body(description=5), "parameter_invalid", "description"),
        (_body(captureMethod=""), "parameter_invalid", "captureMethod"),
    ],
)
async def test_create_validation(gw: InProcessGateway, body: dict[str, Any], code: str, param: str) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["requestId"] == r.headers["x-request-id"]
    listed = await shop.get("/api/v1/payment/intents")
    assert listed.json()["data"] == []  # nothing was written


async def test_jpy_has_no_minor_unit_and_merchant_id_may_match(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    intent = await shop.create_intent(amount=500, currency="JPY", merchantId=shop.creds.merchant_id)
    assert (intent["amount"], intent["currency"]) == (500, "JPY")


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"", "invalid_json"),
     (b'"a string"', "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
async def test_malformed_json(gw: InProcessGateway, raw: bytes, code: str) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, body=raw)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "body",
    [
        _body(description="card 4242424242424242 please"),
        _body(metadata={"note": "4242 4242 4242 4242"}),
        _body(productDetails={"deep": {"list": ["x", "5555-5555-5555-4444"]}}),
        _body(productDetails={"n": 4242424242424242}),
    ],
)
async def test_plaintext_card_numbers_are_refused_and_never_stored(gw: InProcessGateway, body: dict[str, Any]) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "plaintext_card_data"
    # Without the random request id, which may hold "4242" (its base32 has the digits 2-7).
    echoed = r.text.replace(r.json()["error"]["requestId"], "")
    assert "4242" not in echoed and "5555" not in echoed
    assert (await shop.get("/api/v1/payment/intents")).json()["data"] == []


async def test_plaintext_card_in_query_is_refused(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    r = await shop.get("/api/v1/payment/intents?status=4242424242424242")
    assert r.json()["error"]["code"] == "plaintext_card_data"


async def test_another_merchants_intent_is_missing(gw: InProcessGateway) -> None:
    alice, mallory = await gw.new_merchant("Alice"), await gw.new_merchant("Mallory")
    intent = await alice.create_intent()
    pid = intent["paymentIntentId"]
    for r in (
        await mallory.get(f"{INTENT}/{pid}"),
        await mallory.get(f"/api/v1/payment/status?paymentIntentId={pid}"),
        await mallory.get(f"{INTENT}/{pid}/history"),
        await mallory.post("/api/v1/payment/cancel", {"paymentIntentId": pid}),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "resource_missing"
    assert (await mallory.get("/api/v1/payment/intents")).json()["data"] == []
    assert (await alice.get(f"{INTENT}/{pid}")).json()["status"] == "created"


async def test_unknown_ids_are_missing(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    for target in (f"{INTENT}/pi_doesnotexist0000000000000", f"{INTENT}/garbage",
                   "/api/v1/payment/status?paymentIntentId=pi_nope0000000000000000"):
        r = await shop.get(target)
        assert r.status_code == 404 and r.json()["error"]["code"] == "resource_missing"
    r = await shop.get("/api/v1/payment/status")
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_missing"


async def test_list_newest_first_with_cursor_and_status_filter(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    ids = [(await shop.create_intent(amount=100 + i))["paymentIntentId"] for i in range(5)]
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": ids[1]})
    page1 = (await shop.get("/api/v1/payment/intents?limit=2")).json()
    assert [i["paymentIntentId"] for i in page1["data"]] == ids[::-1][:2] and page1["hasMore"]
    page2 = (await shop.get(f"/api/v1/payment/intents?limit=2&startingAfter={ids[3]}")).json()
    assert [i["paymentIntentId"] for i in page2["data"]] == [ids[2], ids[1]] and page2["hasMore"]
    page3 = (await shop.get(f"/api/v1/payment/intents?limit=2&startingAfter={ids[1]}")).json()
    assert [i["paymentIntentId"] for i in page3["data"]] == [ids[0]] and not page3["hasMore"]
    canceled = (await shop.get("/api/v1/payment/intents?status=canceled")).json()
    assert [i["paymentIntentId"] for i in canceled["data"]] == [ids[1]]
    for bad in ("limit=0", "limit=101", "limit=abc", "status=paid"):
        r = await shop.get(f"/api/v1/payment/intents?{bad}")
        assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"


async def test_cancel_state_machine(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["cancellationReason"] is None  # nothing was held (docs/api.md "Manual capture")
    again = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert again.status_code == 409 and again.json()["error"]["code"] == "intent_state_conflict"
    r = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid, "status": "created"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"


async def test_concurrent_cancels_one_wins(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    results = await asyncio.gather(*(shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid}) for _ in range(10)))
    assert sorted(r.status_code for r in results) == [200] + [409] * 9


async def test_status_and_long_poll(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    r = await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}")
    assert r.json() == {
        "paymentIntentId": pid, "status": "created", "amount": 1999, "currency": "USD",
        "amountRefunded": 0, "lastError": None, "updatedAt": r.json()["updatedAt"],
    }
    waiter = asyncio.create_task(shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=30"))
    # The waiter is registered once the notifier counts it; then change the intent.
    await eventually(lambda: gw.gateway.notifier.waiter_count, interval=0.005, what="the waiter to register")
    assert not waiter.done()
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    answered = await asyncio.wait_for(waiter, 5)
    assert answered.json()["status"] == "canceled"
    # Final status answers at once even with a wait.
    r = await asyncio.wait_for(shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=60"), 5)
    assert r.json()["status"] == "canceled"
    r = await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=61")
    assert r.status_code == 400 and r.json()["error"]["param"] == "wait"


async def test_long_poll_times_out_with_current_status(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    r = await shop.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=1")
    assert r.status_code == 200 and r.json()["status"] == "created"


async def test_history_is_captured_by_the_database(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    pid = (await shop.create_intent())["paymentIntentId"]
    await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    history = (await shop.get(f"{INTENT}/{pid}/history")).json()["data"]
    assert [(h["sequence"], h["type"], h["data"]["status"]) for h in history] == [
        (1, "payment_intent.created", "created"), (2, "payment_intent.updated", "canceled")]
    assert all("clientSecret" not in h["data"] and "client_secret_hash" not in h["data"] for h in history)


@pytest.mark.parametrize(
    ("currency", "says"),
    [
        ("XXX", "currency XXX is not supported"),
        ("XTS", "currency XTS is not supported"),
        ("USX", "currency USX is not supported"),
        ("usd", "upper-case ISO 4217"),
        ("US", "upper-case ISO 4217"),
        ("ÜSD", "upper-case ISO 4217"),
        (840, "upper-case ISO 4217"),
    ],
)
async def test_currency_error_says_what_is_wrong(gw: InProcessGateway, currency: object, says: str) -> None:
    """A well-formed code that is not in circulation is "not supported", not "must be
    upper-case ISO 4217" (which it is)."""
    shop = await gw.new_merchant()
    r = await shop.post(INTENT, _body(currency=currency))
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]["message"]


async def test_create_takes_every_limit_exactly(gw: InProcessGateway) -> None:
    """SPEC §4 at its bounds: 20 metadata keys of 40 characters with values of 500,
    productDetails of exactly 8 KiB of JSON (the tests above refuse one more of each)."""
    shop = await gw.new_merchant()
    metadata = {f"{i:02d}" + "k" * 38: "v" * 500 for i in range(20)}
    empty = len(b'{"blob":""}')
    for details in ({"blob": "x" * (8192 - empty)}, {"blob": "é" * ((8192 - empty) // 2)}):
        r = await shop.post(INTENT, _body(metadata=metadata, productDetails=details, amount=99_999_999))
        assert r.status_code == 201, r.text
        assert (r.json()["metadata"], r.json()["productDetails"]) == (metadata, details)
    r = await shop.post(INTENT, _body(productDetails={"blob": "x" * (8193 - empty)}))
    assert r.status_code == 400 and r.json()["error"]["param"] == "productDetails", r.text


async def test_optional_fields_may_be_null(gw: InProcessGateway) -> None:
    # null is "not given" for every optional field; captureMethod, then merchantId, refused it.
    shop = await gw.new_merchant()
    intent = await shop.create_intent(description=None, metadata=None, captureMethod=None, merchantId=None)
    assert (intent["captureMethod"], intent["description"], intent["metadata"]) == ("automatic", None, {})
    assert intent["merchantId"] == shop.creds.merchant_id
    # "at most 1000 characters" (docs/api.md, the OpenAPI document) takes 0 and 1000; 1001 is refused.
    for text in ("", "d" * 1000):
        assert (await shop.create_intent(description=text))["description"] == text
    r = await shop.post(INTENT, _body(description="d" * 1001))
    assert r.status_code == 400 and r.json()["error"]["param"] == "description", r.text


async def test_only_create_answers_with_the_client_secret(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    created = await shop.create_intent()
    pid = created["paymentIntentId"]
    listed = (await shop.get("/api/v1/payment/intents?limit=100")).json()
    assert [i["paymentIntentId"] for i in listed["data"]] == [pid] and listed["hasMore"] is False
    assert listed["data"][0] == {k: v for k, v in created.items() if k != "clientSecret"}
    canceled = await shop.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
    assert "clientSecret" not in canceled.json()
    assert created["clientSecret"] not in (await shop.get(f"{INTENT}/{pid}/history")).text


async def test_a_cursor_of_another_merchant_reveals_nothing(gw: InProcessGateway) -> None:
    alice, mallory = await gw.new_merchant("Alice"), await gw.new_merchant("Mallory")
    theirs = (await alice.create_intent())["paymentIntentId"]
    await mallory.create_intent()
    for cursor in (theirs, "pi_" + "a" * 26):  # another merchant's, and no one's: the same empty page
        r = await mallory.get(f"/api/v1/payment/intents?startingAfter={cursor}")
        assert r.status_code == 200 and r.json() == {"data": [], "hasMore": False}, r.text
