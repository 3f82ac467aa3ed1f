"""The webhook receiver: signatures checked with the SDK, deliveries deduplicated."""
from __future__ import annotations

import json
import time
from typing import Any

from paygate import webhooks
from tests.examples.conftest import ShopHarness, new_webhook_secret, running_shop


def event(type_: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"type": type_, "timestamp": "2024-05-01T12:00:00Z", "data": data}).encode()


async def deliver(shop: ShopHarness, body: bytes, msg_id: str, *, secret: str | None = None,
                  timestamp: int | None = None) -> Any:
    headers = webhooks.sign_headers(body, secret or shop.config.webhook_secret or "", msg_id=msg_id,
                                    timestamp=timestamp)
    return await shop.http.post("/webhooks/paygate", content=body,
                                headers={**headers, "content-type": "application/json"})


async def paid_order(shop: ShopHarness) -> tuple[str, dict[str, Any]]:
    order_id = await shop.place_order("tw-dripper-02")
    await shop.login()
    intent_id = (await shop.order(order_id))["paymentIntentId"]
    shop.gateway.settle(intent_id, "succeeded")
    return order_id, dict(shop.gateway.intents[intent_id])


async def test_a_signed_event_updates_the_order(shop: ShopHarness) -> None:
    order_id, intent = await paid_order(shop)
    r = await deliver(shop, event("payment_intent.succeeded", intent), "evt_1")
    assert r.status_code == 200 and r.json() == {"received": True, "duplicate": False}
    order = await shop.order(order_id)
    assert order["status"] == "paid"
    assert [(e["webhookId"], e["type"]) for e in order["webhookEvents"]] == [
        ("evt_1", "payment_intent.succeeded")]


async def test_a_redelivery_is_acknowledged_and_applied_once(shop: ShopHarness) -> None:
    order_id, intent = await paid_order(shop)
    await deliver(shop, event("payment_intent.succeeded", intent), "evt_paid")
    refund = {"refundId": "re_1", "paymentIntentId": intent["paymentIntentId"], "amount": 700,
              "currency": "USD", "status": "succeeded"}
    for _ in range(3):  # at-least-once delivery: the same webhook-id, three times
        r = await deliver(shop, event("refund.succeeded", refund), "evt_refund")
        assert r.status_code == 200
    assert r.json()["duplicate"] is True
    order = await shop.order(order_id)
    assert order["amountRefunded"] == 700 and order["status"] == "partially_refunded"
    assert [e["deliveries"] for e in order["webhookEvents"] if e["type"] == "refund.succeeded"] == [3]
    # The same refund under another event id (a replay by an operator) is not counted twice.
    await deliver(shop, event("refund.succeeded", refund), "evt_refund_replayed")
    assert (await shop.order(order_id))["amountRefunded"] == 700


async def test_bad_signatures_are_refused_and_change_nothing(shop: ShopHarness) -> None:
    order_id, intent = await paid_order(shop)
    body = event("payment_intent.succeeded", intent)
    assert (await deliver(shop, body, "evt_a", secret=new_webhook_secret())).status_code == 400
    assert (await deliver(shop, body, "evt_b", timestamp=int(time.time()) - 3600)).status_code == 400
    headers = webhooks.sign_headers(body, shop.config.webhook_secret or "", msg_id="evt_c")
    tampered = body.replace(b'"succeeded"', b'"canceled"')
    r = await shop.http.post("/webhooks/paygate", content=tampered, headers=headers)
    assert r.status_code == 400
    r = await shop.http.post("/webhooks/paygate", content=body, headers={"webhook-id": "evt_d"})
    assert r.status_code == 400
    order = await shop.order(order_id)
    assert order["status"] == "awaiting_payment" and order["webhookEvents"] == []
    # A refused delivery was not recorded: the genuine one with the same id still counts.
    assert (await deliver(shop, body, "evt_a")).json()["duplicate"] is False


async def test_a_replay_under_a_second_webhook_id_header_is_refused(shop: ShopHarness) -> None:
    # A captured delivery sent again with a new webhook-id header in front of the real
    # one: it used to verify (against the last id) and be recorded under the new (first)
    # id, as a delivery never seen.
    order_id, intent = await paid_order(shop)
    body = event("payment_intent.succeeded", intent)
    headers = webhooks.sign_headers(body, shop.config.webhook_secret or "", msg_id="evt_real")
    assert (await shop.http.post("/webhooks/paygate", content=body, headers=headers)).status_code == 200
    replay = [("webhook-id", "evt_fresh"), *headers.items()]
    r = await shop.http.post("/webhooks/paygate", content=body, headers=replay)
    assert r.status_code == 400
    order = await shop.order(order_id)
    assert [e["webhookId"] for e in order["webhookEvents"]] == ["evt_real"]


async def test_out_of_order_events_leave_the_order_paid(shop: ShopHarness) -> None:
    order_id, intent = await paid_order(shop)
    await deliver(shop, event("payment_intent.succeeded", intent), "evt_2")
    stale = {**intent, "status": "in_progress", "updatedAt": "2000-01-01T00:00:00Z"}
    await deliver(shop, event("payment_intent.in_progress", stale), "evt_1")
    assert (await shop.order(order_id))["status"] == "paid"


async def test_events_for_unknown_intents_are_acknowledged(shop: ShopHarness) -> None:
    r = await deliver(shop, event("payment_intent.succeeded", {"paymentIntentId": "pi_other", "status": "succeeded"}),
                      "evt_x")
    assert r.status_code == 200


async def test_without_a_secret_deliveries_are_retried_later(tmp_path: Any) -> None:
    async with running_shop(tmp_path, webhook_secret=None) as shop:
        r = await shop.http.post("/webhooks/paygate", content=b"{}")
        assert r.status_code == 503


async def test_a_refund_event_the_shop_cannot_record_is_acknowledged_not_a_500(shop: ShopHarness) -> None:
    # A negative, zero, boolean or out-of-range amount failed the refunds table's checks (or
    # SQLite's integer range): a 500, and the gateway retrying the event for days.
    order_id, intent = await paid_order(shop)
    await deliver(shop, event("payment_intent.succeeded", intent), "evt_paid")
    for i, amount in enumerate((-5, 0, True, 2**70, 3701)):
        refund = {"refundId": f"re_odd{i}", "paymentIntentId": intent["paymentIntentId"], "amount": amount,
                  "currency": "USD", "status": "succeeded"}
        r = await deliver(shop, event("refund.succeeded", refund), f"evt_odd{i}")
        assert r.status_code == 200, (amount, r.text)
    order = await shop.order(order_id)
    assert (order["status"], order["amountRefunded"], order["refunds"]) == ("paid", 0, [])


async def test_an_intent_event_the_shop_cannot_record_is_acknowledged_not_a_500(shop: ShopHarness) -> None:
    # Once: a signed intent event with an amount out of the shop's range (negative, past
    # SQLite's integers, more than the order) or not an integer was a 500, which the gateway
    # retries for days. Acknowledged, recorded, not applied: the order stays as it was.
    order_id, intent = await paid_order(shop)
    await deliver(shop, event("payment_intent.succeeded", intent), "evt_paid")
    before = await shop.order(order_id)
    for n, (field, value) in enumerate([("amountReceived", -1), ("amountReceived", 10**30),
                                        ("amountRefunded", -5), ("amountRefunded", 10**19),
                                        ("amountCapturable", -1), ("amountReceived", 12.5),
                                        ("amountRefunded", "700"), ("amountReceived", intent["amount"] + 1)]):
        r = await deliver(shop, event("payment_intent.updated", {**intent, field: value}), f"evt_odd_{n}")
        assert r.status_code == 200, (field, value, r.status_code, r.text)
    after = await shop.order(order_id)
    assert {k: after[k] for k in ("status", "amountRefunded")} == {k: before[k] for k in ("status", "amountRefunded")}


async def test_a_refund_event_whose_reason_is_not_text_is_recorded_not_a_500(shop: ShopHarness) -> None:
    # The reason went to SQLite as given: a JSON object or list ("type 'dict' is not
    # supported") or an integer past SQLite's range was a 500, retried by the gateway for days.
    order_id, intent = await paid_order(shop)
    await deliver(shop, event("payment_intent.succeeded", intent), "evt_paid")
    for n, reason in enumerate(({"x": 1}, ["damaged"], 10**30)):
        refund = {"refundId": f"re_r{n}", "paymentIntentId": intent["paymentIntentId"], "amount": 100,
                  "currency": "USD", "status": "succeeded", "reason": reason}
        r = await deliver(shop, event("refund.succeeded", refund), f"evt_r{n}")
        assert r.status_code == 200, (reason, r.status_code, r.text)
    order = await shop.order(order_id)
    assert order["amountRefunded"] == 300 and order["status"] == "partially_refunded"


async def test_an_intent_event_whose_id_is_not_text_is_acknowledged_not_a_500(shop: ShopHarness) -> None:
    # An intent event found by its metadata's orderId bound its paymentIntentId in the query
    # as given: a list or an object was a 500 ("type 'list' is not supported"), retried for days.
    order_id = await shop.place_order("tw-dripper-02")
    await shop.login()
    for n, intent_id in enumerate((["pi_x"], {"id": "pi_x"}, 10**30)):
        data = {"paymentIntentId": intent_id, "status": "created", "metadata": {"orderId": order_id}}
        r = await deliver(shop, event("payment_intent.created", data), f"evt_id{n}")
        assert r.status_code == 200, (intent_id, r.status_code, r.text)
    assert (await shop.order(order_id))["status"] == "awaiting_payment"
