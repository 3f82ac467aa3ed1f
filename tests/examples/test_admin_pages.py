"""What a merchant notices on the admin pages (hardening #15.18): a refund form that keeps
what was typed after an error, a confirmation before refunding everything, labels written
the way their owners write them, and no shopper's test-card hint on admin pages."""
from __future__ import annotations

import dataclasses
import re

from tests.examples.conftest import ShopHarness


def _hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


async def _paid_order(shop: ShopHarness) -> str:
    order_id = await shop.place_order("tw-dripper-02")  # 3200 + 500 shipping
    await shop.http.post(f"/orders/{order_id}/pay", json={"token": "tok_ok_0123456789"})
    await shop.login()
    return order_id


async def test_a_refused_refund_keeps_what_the_merchant_typed(shop: ShopHarness) -> None:
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    for typed, status in (("12.345", 400), ("99.00", 400)):
        r = await shop.http.post(f"/admin/orders/{order_id}/refund",
                                 data={**fields, "amount": typed, "reason": "damaged"})
        assert r.status_code == status
        assert f'id="refund-amount" name="amount" inputmode="decimal" value="{typed}"' in r.text
        assert '<option value="damaged" selected>' in r.text
        assert _hidden_fields(r.text)["key"] == fields["key"]  # the same refund, retried
    assert shop.gateway.refunds == []


async def test_refunding_everything_asks_for_a_confirmation_first(shop: ShopHarness) -> None:
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    r = await shop.http.post(f"/admin/orders/{order_id}/refund",
                             data={**fields, "amount": "37.00", "reason": "duplicate"})
    assert r.status_code == 200 and shop.gateway.refunds == []
    assert "Refund everything?" in r.text and 'id="confirm-refund-button"' in r.text and "$37.00" in r.text
    confirm = _hidden_fields(r.text)
    assert (confirm["amount"], confirm["reason"], confirm["confirm"]) == ("37.00", "duplicate", "full")
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data=confirm)
    assert r.status_code == 303
    assert [(x["amount"], x["reason"]) for x in shop.gateway.refunds] == [(3700, "duplicate")]
    # A partial refund needs no second step.
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": "36.99"})
    assert r.status_code == 303 and len(shop.gateway.refunds) == 2


async def test_a_changed_amount_after_an_error_is_a_new_refund_for_the_gateway(shop: ShopHarness) -> None:
    """Same form key, other amount: another idempotency key (the gateway would answer 422
    to a reused one); the same amount again: the same key (a retry is replayed)."""
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    for amount in ("5.00", "5.00", "6.00"):
        await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": amount})
    keys = [h["idempotency-key"] for _, path, h in shop.gateway.requests if path == "/api/v1/payment/refund"]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert [x["amount"] for x in shop.gateway.refunds] == [500, 600]


async def test_messages_keep_currency_codes_upper_case(shop: ShopHarness) -> None:
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": "1.234"})
    assert "USD amounts have at most 2 decimals." in r.text and "Usd" not in r.text
    r = await shop.http.post(f"/admin/orders/{order_id}/refund", data={**fields, "amount": "ten"})
    assert "Enter an amount such as 12.50." in r.text


def test_card_brands_are_written_as_their_owners_write_them(shop: ShopHarness) -> None:
    from storefront.states import OrderStatus, PaymentState
    from storefront.store import Order
    from storefront.web import card_label, sentence

    order = Order(id="ord_x", number=1, currency="USD", subtotal=100, shipping=0, total=100,
                  payment=PaymentState(status=OrderStatus.PAID, total=100, card_last4="0000"),
                  intent_id=None, client_secret=None, created_at="", updated_at="", paid_at=None, lines=())
    labels = {brand: card_label(dataclasses.replace(order, payment=dataclasses.replace(order.payment, card_brand=brand)))
              for brand in ("jcb", "unionpay", "diners", "unknown", None)}
    assert labels == {"jcb": "JCB •••• 0000", "unionpay": "UnionPay •••• 0000", "diners": "Diners Club •••• 0000",
                      "unknown": "Card •••• 0000", None: "Card •••• 0000"}
    assert sentence("USD amounts have at most 2 decimals") == "USD amounts have at most 2 decimals."


async def test_the_test_card_banner_is_for_shoppers_only(shop: ShopHarness) -> None:
    order_id = await shop.place_order()
    for path in ("/", "/cart", f"/orders/{order_id}", "/nowhere"):
        assert 'class="test-banner"' in (await shop.http.get(path)).text, path
    assert 'class="test-banner"' not in (await shop.http.get("/admin")).text  # the login page
    await shop.login()
    for path in ("/admin", f"/admin/orders/{order_id}"):
        page = (await shop.http.get(path)).text
        assert "Log out" in page and 'class="test-banner"' not in page and "Use card" not in page, path


async def test_a_refund_key_with_a_trailing_line_end_is_replaced_not_a_500(shop: ShopHarness) -> None:
    # re.match with "$" also matched before a final "\n": the typed key went into the
    # idempotency key, which the SDK refused (ValueError): a 500. Now a fresh key is made.
    order_id = await _paid_order(shop)
    fields = _hidden_fields((await shop.http.get(f"/admin/orders/{order_id}")).text)
    r = await shop.http.post(f"/admin/orders/{order_id}/refund",
                             data={**fields, "key": "k" * 20 + "\n", "amount": "5.00", "reason": "damaged"})
    assert r.status_code == 303, r.text[:300]
    assert [x["amount"] for x in shop.gateway.refunds] == [500]
