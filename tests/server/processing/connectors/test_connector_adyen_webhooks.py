"""Adyen's standard notifications: HMAC verification cross-checked with Adyen's own Python
library (``Adyen.util``), one bad item rejecting the batch, and every eventCode the
connector reads, with both ``success`` values.

Shapes: docs.adyen.com/api-explorer/Webhooks/1/post/AUTHORISATION (and CAPTURE,
CAPTURE_FAILED, CANCELLATION, TECHNICAL_CANCEL, REFUND, REFUND_FAILED, CANCEL_OR_REFUND);
signature: docs.adyen.com/development-resources/webhooks/verify-hmac-signatures.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from typing import Any

import orjson
import pytest
from Adyen import util as adyen_util

from paygate_server.http1client import ConnectionLost, Response
from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    WebhookRejected,
)
from paygate_server.processing.connectors.adyen import AdyenConnector, signing_string
from tests.server.processing.connectors.test_connector_adyen import Script

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcome tables readable
# The HMAC key of Adyen's documented example (it is in their docs and libraries' tests).
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
API_KEY = "AQEyhmfxK4-secret-api-key-value"
MERCHANT = "PaygateECOM"
PSP = "QFQTPCQ8HXSKGK82"


def _connector(*answers: Response | BaseException, hmac_key: str = HMAC_KEY) -> AdyenConnector:
    return AdyenConnector("https://checkout-test.adyen.com", MERCHANT, API_KEY, hmac_key,
                          transport=Script(list(answers)))


def _item(event: str = "AUTHORISATION", success: str = "true", *, reference: str = "txn_1",
          psp: str = PSP, original: str | None = None, value: int = 1999, reason: str | None = None,
          extra: dict[str, str] | None = None, merchant: str = MERCHANT) -> dict[str, Any]:
    item: dict[str, Any] = {
        "additionalData": dict(extra or {}),
        "amount": {"currency": "EUR", "value": value},
        "eventCode": event,
        "eventDate": "2026-12-03T08:00:00+01:00",
        "merchantAccountCode": merchant,
        "merchantReference": reference,
        "paymentMethod": "visa",
        "pspReference": psp,
        "success": success,
    }
    if original is not None:
        item["originalReference"] = original
    if reason is not None:
        item["reason"] = reason
    return item


def _signed_by_adyen(item: dict[str, Any], key: str = HMAC_KEY) -> dict[str, Any]:
    """Signed with Adyen's library (which signs the item without its additionalData)."""
    item = copy.deepcopy(item)
    bare = {k: v for k, v in item.items() if k != "additionalData"}
    item["additionalData"]["hmacSignature"] = adyen_util.generate_notification_sig(bare, key).decode()
    return item


def _signed_by_us(item: dict[str, Any], key: str = HMAC_KEY) -> dict[str, Any]:
    """Signed with the connector's signing string and the standard library's HMAC."""
    item = copy.deepcopy(item)
    digest = hmac.new(bytes.fromhex(key), signing_string(item).encode(), hashlib.sha256).digest()
    item["additionalData"]["hmacSignature"] = base64.b64encode(digest).decode()
    return item


def _body(*items: dict[str, Any]) -> bytes:
    return orjson.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]})


# --- signatures ------------------------------------------------------------------------------


def test_adyens_documented_example_signature() -> None:
    # Adyen's published example: this item and key give this signature.
    item = {"pspReference": "7914073381342284", "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704", "amount": {"value": 1130, "currency": "EUR"},
            "eventCode": "AUTHORISATION", "success": "true"}
    assert signing_string(item) == "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
    signed = _signed_by_us({**item, "additionalData": {}})
    assert signed["additionalData"]["hmacSignature"] == "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="


@pytest.mark.parametrize(
    "item",
    [
        _item(),
        _item("AUTHORISATION", "false", reason="Not enough balance"),
        _item("CAPTURE", original=PSP, psp="8825408195409505", reference="cap_1", value=1500),
        _item("REFUND", original=PSP, psp="8825408195409506", reference="re:1\\x", value=0),
        _item(reference="ünïcödé-ref"),
    ],
)
def test_items_signed_by_adyens_library_are_accepted(item: dict[str, Any]) -> None:
    signed = _signed_by_adyen(item)
    reply = _connector().parse_webhook({}, _body(signed))
    assert len(reply.events) == 1
    assert adyen_util.is_valid_hmac_notification(signed, HMAC_KEY)


@pytest.mark.parametrize("item", [_item(), _item("CANCELLATION", "false", original=PSP, reference="void_1")])
def test_items_signed_by_the_connector_are_accepted_by_adyens_library(item: dict[str, Any]) -> None:
    signed = _signed_by_us(item)
    assert adyen_util.is_valid_hmac_notification(signed, HMAC_KEY)
    assert signed == _signed_by_adyen(item)
    assert _connector().parse_webhook({}, _body(signed)).events


@pytest.mark.parametrize(
    "tamper",
    [
        lambda i: i["amount"].__setitem__("value", 1),
        lambda i: i["amount"].__setitem__("currency", "USD"),
        lambda i: i.__setitem__("success", "false"),
        lambda i: i.__setitem__("merchantReference", "txn_2"),
        lambda i: i.__setitem__("pspReference", "0000000000000000"),
        lambda i: i.__setitem__("eventCode", "REFUND"),
        lambda i: i.__setitem__("originalReference", PSP),
        lambda i: i.__setitem__("merchantAccountCode", "OtherAccount"),
    ],
)
def test_a_tampered_item_is_rejected_by_both(tamper: Any) -> None:
    signed = _signed_by_adyen(_item())
    tamper(signed)
    assert not adyen_util.is_valid_hmac_notification(signed, HMAC_KEY)
    with pytest.raises(WebhookRejected):
        _connector().parse_webhook({}, _body(signed))


def test_a_signature_made_with_another_key_is_rejected() -> None:
    other = "00" * 32
    signed = _signed_by_adyen(_item(), other)
    with pytest.raises(WebhookRejected, match="does not match"):
        _connector().parse_webhook({}, _body(signed))
    assert _connector(hmac_key=other).parse_webhook({}, _body(signed)).events


def test_one_bad_item_rejects_the_whole_batch() -> None:
    good = [_signed_by_adyen(_item(reference=f"txn_{n}", psp=f"PSP{n:013d}")) for n in range(3)]
    assert len(_connector().parse_webhook({}, _body(*good)).events) == 3
    bad = copy.deepcopy(good)
    bad[1]["amount"]["value"] += 1
    with pytest.raises(WebhookRejected):
        _connector().parse_webhook({}, _body(*bad))
    unsigned = copy.deepcopy(good)
    del unsigned[2]["additionalData"]["hmacSignature"]
    with pytest.raises(WebhookRejected, match="no hmacSignature"):
        _connector().parse_webhook({}, _body(*unsigned))


def test_a_correctly_signed_item_for_another_merchant_account_is_listed_not_read() -> None:
    """A company-level webhook carries every merchant account's items under one key: the
    batch is accepted, the connector reads its own account's items only, and lists the
    others for the gateway (processors/notifications.py) — never reads them as its own."""
    signed = _signed_by_adyen(_item(merchant="SomeoneElseECOM", reference="txn_9", psp="PSP0000000000009"))
    assert adyen_util.is_valid_hmac_notification(signed, HMAC_KEY)
    reply = _connector().parse_webhook({}, _body(_signed_by_adyen(_item()), signed))
    assert (reply.status, reply.body) == (200, b"[accepted]")
    assert [event.result.reference for event in reply.events] == ["txn_1"]
    [other] = reply.other_accounts
    assert (other.index, other.account, other.processor_id, other.event_code) == (
        1, "SomeoneElseECOM", "PSP0000000000009", "AUTHORISATION")
    alone = _connector().parse_webhook({}, _body(signed))
    assert (alone.events, len(alone.other_accounts), alone.body) == ((), 1, b"[accepted]")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not JSON"),
        (b"[]", "no notificationItems"),
        (orjson.dumps({"live": "false", "notificationItems": []}), "no notificationItems"),
        (orjson.dumps({"live": "false", "notificationItems": [{"Other": {}}]}), "NotificationRequestItem"),
        (_body({**_item(), "additionalData": {"hmacSignature": ""}}), "no hmacSignature"),
        (_body({**_item(), "additionalData": {"hmacSignature": "%%%not base64%%%"}}), "cannot be read"),
        (_body({**_item(), "amount": None, "additionalData": {"hmacSignature": "AAAA"}}), "cannot be read"),
        (_body({**_item(), "success": True, "additionalData": {"hmacSignature": "AAAA"}}), "cannot be read"),
        (_body({**_item(), "additionalData": None}), "no hmacSignature"),
    ],
)
def test_unreadable_notifications_are_rejected(body: bytes, match: str) -> None:
    with pytest.raises(WebhookRejected, match=match) as raised:
        _connector().parse_webhook({}, body)
    assert HMAC_KEY not in str(raised.value) and HMAC_KEY.lower() not in str(raised.value)


def test_a_signed_batch_with_a_non_finite_number_anywhere_is_not_json() -> None:
    """The slow set's Adyen fuzz drew a signed batch whose unsigned ``reason`` was
    ``{"": Infinity}`` (as ``json.dumps`` writes it): not RFC 8259 JSON, so refused whole,
    like any other body that is not JSON, however well its items are signed."""
    item = _signed_by_adyen(_item())
    assert json.loads(_body(item))  # the batch itself is good
    for value in (float("inf"), float("-inf"), float("nan")):
        body = json.dumps({"live": "false", "notificationItems": [
            {"NotificationRequestItem": {**item, "reason": {"": value}}}]}, allow_nan=True).encode()
        with pytest.raises(WebhookRejected, match="not JSON"):
            _connector().parse_webhook({}, body)


# --- events ----------------------------------------------------------------------------------


def _events(*items: dict[str, Any]) -> list[Any]:
    reply = _connector().parse_webhook({"content-type": "application/json"}, _body(*map(_signed_by_adyen, items)))
    assert (reply.status, reply.body, reply.content_type) == (200, b"[accepted]", "text/plain")
    return list(reply.events)


def test_authorisation_success_is_an_approved_charge() -> None:
    [event] = _events(_item(extra={"authCode": "058705"}, reason="058705:1111:03/2030"))
    assert (event.kind, event.payment_processor_id) == ("charge", PSP)
    result = event.result
    assert (result.reference, result.outcome, result.auth_code, result.processor_id) == (
        "txn_1", O.APPROVED, "058705", PSP)


def test_authorisation_auth_code_from_the_reason_when_additional_data_lacks_it() -> None:
    [event] = _events(_item(reason="874574:1111:03/2030"))
    assert event.result.auth_code == "874574"
    [event] = _events(_item())
    assert (event.result.outcome, event.result.auth_code) == (O.APPROVED, None)


@pytest.mark.parametrize(
    ("reason", "decline_code"),
    [("Not enough balance", "insufficient_funds"), ("CVC Declined", "incorrect_cvc"),
     ("Expired Card", "expired_card"), ("Refused", "generic_decline"), (None, "generic_decline")],
)
def test_authorisation_failure_is_a_declined_charge(reason: str | None, decline_code: str) -> None:
    [event] = _events(_item(success="false", reason=reason))
    assert event.kind == "charge"
    assert (event.result.reference, event.result.outcome, event.result.decline_code) == (
        "txn_1", O.DECLINED, decline_code)
    assert event.result.processor_id == PSP


@pytest.mark.parametrize(
    ("code", "success", "kind", "outcome"),
    [
        ("CAPTURE", "true", "capture", O.APPROVED),
        ("CAPTURE", "false", "capture", O.DECLINED),
        ("CAPTURE_FAILED", "true", "capture", O.DECLINED),
        ("CANCELLATION", "true", "void", O.APPROVED),
        ("CANCELLATION", "false", "void", O.DECLINED),
        ("TECHNICAL_CANCEL", "true", "void", O.APPROVED),
        ("TECHNICAL_CANCEL", "false", "void", O.DECLINED),
        ("REFUND", "true", "refund", O.APPROVED),
        ("REFUND", "false", "refund", O.DECLINED),
        ("REFUND_FAILED", "true", "refund", O.DECLINED),
    ],
)
def test_modification_events(code: str, success: str, kind: str, outcome: ChargeOutcome) -> None:
    [event] = _events(_item(code, success, reference="op_1", psp="8825408195409505", original=PSP,
                            reason=None if success == "true" else "Insufficient balance on payment"))
    assert (event.kind, event.payment_processor_id) == (kind, PSP)
    assert (event.result.reference, event.result.outcome, event.result.processor_id) == ("op_1", outcome, PSP)


@pytest.mark.parametrize(("action", "kind"), [("cancel", "void"), ("refund", "refund")])
@pytest.mark.parametrize(("success", "outcome"), [("true", O.APPROVED), ("false", O.DECLINED)])
def test_cancel_or_refund_follows_the_action_adyen_took(action: str, kind: str, success: str,
                                                        outcome: ChargeOutcome) -> None:
    [event] = _events(_item("CANCEL_OR_REFUND", success, reference="op_2", original=PSP,
                            extra={"modification.action": action}))
    assert (event.kind, event.result.outcome, event.payment_processor_id) == (kind, outcome, PSP)


@pytest.mark.parametrize(
    "item",
    [
        _item("CANCEL_OR_REFUND", original=PSP),  # no action: cannot tell what it did
        # additionalData is not signed and may hold any JSON: an action that is no string
        # (a list was unhashable: a 500) names nothing.
        *(_item("CANCEL_OR_REFUND", original=PSP, extra={"modification.action": action})  # type: ignore[dict-item]
          for action in (["refund"], {"a": 1}, 5, None)),
        _item("CHARGEBACK", original=PSP),
        _item("REPORT_AVAILABLE", reference="", psp="settlement_detail_report_batch_1.csv"),
        _item("PENDING"),
        _item("AUTHORISATION", "maybe"),  # neither true nor false: no outcome
    ],
)
def test_other_notifications_are_accepted_without_events(item: dict[str, Any]) -> None:
    assert _events(item) == []


def test_a_batch_gives_one_event_per_item_in_order() -> None:
    events = _events(_item(reference="txn_a", psp="PSPA000000000000"), _item("CHARGEBACK", original=PSP),
                     _item("CAPTURE", reference="cap_b", original="PSPA000000000000"))
    assert [(e.kind, e.result.reference) for e in events] == [("charge", "txn_a"), ("capture", "cap_b")]


# --- a lost answer, then the notification -----------------------------------------------------


async def test_a_lost_answer_is_unknown_until_the_authorisation_notification() -> None:
    connector = _connector(ConnectionLost("connection ended before the answer"))
    card = CardDetails("4111111111111111", 3, 2030, "737")
    result = await connector.charge(ChargeRequest("txn_lost", "pi_1", "mer_1", 1999, "EUR", card, capture=False))
    assert result.outcome is O.UNKNOWN
    assert (await connector.lookup("txn_lost")).outcome is O.UNKNOWN  # Adyen cannot be asked
    reply = connector.parse_webhook({}, _body(_signed_by_adyen(
        _item(reference="txn_lost", psp="KHQC5N7G84BLNK43", extra={"authCode": "123456"}))))
    [event] = reply.events
    assert (event.kind, event.result.reference, event.result.outcome) == ("charge", "txn_lost", O.APPROVED)
    assert (event.result.processor_id, event.payment_processor_id, event.result.auth_code) == (
        "KHQC5N7G84BLNK43", "KHQC5N7G84BLNK43", "123456")
