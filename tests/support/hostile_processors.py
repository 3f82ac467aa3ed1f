"""Hostile processor notifications for tests/e2e/test_hostile_processor_webhooks.py: the
merchants' Stripe and Adyen secrets, and hypothesis strategies for signed Stripe events,
``Stripe-Signature`` headers and Adyen notification batches naming real operations (given
as rows: kind, status, reference, processor_id, amount, currency), and what the gateway
must answer each (computed here from what was sent, not from the gateway's code)."""
from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import stripe as stripe_lib
from Adyen import util as adyen_util
from hypothesis import strategies as st

from tests.support.hostile import CARD_NUMBERS, json_values, text_values

__all__ = ["ADYEN_ACCOUNTS", "ADYEN_KEYS", "STRIPE_SECRETS", "Shops", "adyen_bodies", "stripe_events",
           "stripe_expects_200", "stripe_headers", "stripe_lib_accepts", "stripe_sign", "utf8"]

STRIPE_SECRETS = {"A": "whsec_hostile_shop_a_0123456789", "B": "whsec_hostile_shop_b_9876543210"}
ADYEN_KEYS = {"A": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056", "B": "22" * 32}
ADYEN_ACCOUNTS = {"A": "ShopECOM", "B": "OtherECOM"}
# Each shop's operations (by shop name): what notifications name.
Shops = Mapping[str, Sequence[dict[str, Any]]]

# -- what the hostile notifications name and state ------------------------------------------------

amounts = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                    st.sampled_from([0, -1, 2**63, 10**30, 1.5, "4100", "", None, [], {}, True]))
currencies = st.one_of(st.sampled_from(["EUR", "eur", "USD", "usd", "", "XXX", "EU", "EURO", "€", "EUR\x00",
                                        "ISK", "JOD", "BHD", None, 978, []]), text_values)
ids = st.one_of(text_values, st.sampled_from(["pi_", "pi_" + "x" * 300, "\x00", "ref\x00", "8815000000000001"]))


def _names(draw: st.DrawFn, shops: Shops, own: str) -> tuple[dict[str, Any], str]:
    """An operation for a notification to name: one of the notified account's merchant's,
    one of the other merchant's, or none (a made-up one); and which."""
    which = draw(st.sampled_from(["own", "own", "other", "none"]))
    if which == "none":
        return {"kind": "charge", "reference": draw(ids), "processor_id": draw(ids), "amount": draw(amounts),
                "currency": draw(currencies), "status": "none", "connector": ""}, which
    return draw(st.sampled_from(list(shops[own if which == "own" else next(n for n in shops if n != own)]))), which


def _with_card_numbers(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with a card number put in some of its strings (or replacing them)."""
    if isinstance(value, dict):
        return {k: _with_card_numbers(draw, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_card_numbers(draw, v) for v in value]
    if isinstance(value, str) and draw(st.integers(0, 9)) == 0:
        number = draw(st.sampled_from(CARD_NUMBERS))
        return draw(st.sampled_from([number, f"{value} {number}", f"card {number}:{value}"]))
    return value


def _mangled(draw: st.DrawFn, obj: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """``obj`` with some fields dropped or given values of any type."""
    out = dict(obj)
    for key in keys:
        choice = draw(st.integers(0, 7))
        if choice == 0:
            out.pop(key, None)
        elif choice == 1:
            out[key] = draw(json_values)
    return out


# -- Stripe ------------------------------------------------------------------------------------------

STRIPE_TYPES = ["payment_intent.succeeded", "payment_intent.amount_capturable_updated",
                "payment_intent.payment_failed", "payment_intent.canceled", "refund.created", "refund.updated",
                "refund.failed", "charge.refund.updated", "charge.succeeded", "customer.created", "", "PAYMENT_INTENT.SUCCEEDED"]


def stripe_sign(secret: str, timestamp: int, body: bytes) -> str:
    """Stripe's scheme, written here from its documentation (docs.stripe.com/webhooks#verify-manually);
    the tests cross-check it with the official library's verifier."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


@st.composite
def stripe_events(draw: st.DrawFn, shops: Shops, own: str) -> tuple[bytes, str]:
    """A correctly signed, hostile Stripe event: its body and why it is what it is."""
    named, which = _names(draw, shops, own)
    kind = draw(st.sampled_from(STRIPE_TYPES) | text_values)
    money_kind = "refund" if named["kind"] == "refund" else "pi"
    meta_key = {"charge": "paygate_reference", "authorization": "paygate_reference", "capture": "paygate_capture",
                "void": "paygate_void", "refund": "paygate_reference"}.get(named["kind"], "paygate_reference")
    obj: dict[str, Any] = {
        "id": named["processor_id"] if money_kind == "pi" else "re_" + uuid.uuid4().hex,
        "object": "refund" if money_kind == "refund" else "payment_intent",
        "status": draw(st.sampled_from(["succeeded", "requires_capture", "canceled", "failed", "pending",
                                        "requires_payment_method", "processing", "weird"]) | json_values),
        "capture_method": draw(st.sampled_from(["automatic", "manual", None, 5])),
        "amount": draw(st.sampled_from([named["amount"]]) | amounts),
        "amount_received": draw(amounts), "amount_capturable": draw(amounts),
        "currency": draw(st.sampled_from([str(named["currency"]).lower()]) | currencies),
        "metadata": {meta_key: named["reference"], **draw(st.dictionaries(st.sampled_from(
            ["paygate_reference", "paygate_capture", "paygate_void", "paygate_intent"]), ids, max_size=2))},
        "latest_charge": draw(st.sampled_from(["ch_" + uuid.uuid4().hex, None, {"id": "ch_x", "amount_captured": 5}])
                              | json_values),
        "last_payment_error": draw(st.sampled_from([None, {"code": "card_declined", "decline_code": "insufficient_funds",
                                                           "message": "Your card has insufficient funds."}])
                                   | json_values),
        "cancellation_reason": draw(st.sampled_from([None, "automatic", "requested_by_customer"]) | json_values),
        "payment_intent": draw(ids),
        "failure_reason": draw(text_values),
    }
    money = ("amount", "amount_received", "amount_capturable")
    if which == "own" and named["status"] == "unknown":
        # About the charge left unknown: every amount it could state is another, or no
        # integer, so it is never a valid outcome of it (the last test sends that one).
        other = st.integers(-(2**63), 2**63).filter(lambda v: v != named["amount"])
        for key in money:
            obj[key] = draw(other | st.sampled_from([1.5, str(named["amount"]), True, [named["amount"]], {}]))
    else:
        money = ()
    obj = _mangled(draw, obj, [key for key in obj if key not in money])
    event_doc: Any = {"id": "evt_" + uuid.uuid4().hex, "object": "event", "type": kind, "api_version": "2024-06-20",
                      "created": int(time.time()), "data": {"object": obj}}
    level = draw(st.sampled_from(["none"] * 6 + ["event", "data", "object", "type"]))
    if level == "event":
        event_doc = draw(json_values)
    elif level == "data":
        event_doc["data"] = draw(json_values)
    elif level == "object":
        event_doc["data"]["object"] = draw(json_values)
    elif level == "type":
        event_doc["type"] = draw(json_values)
    event_doc = _with_card_numbers(draw, event_doc)
    body = json.dumps(event_doc, allow_nan=True).encode()
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.sampled_from([b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"type":"x","data":{"object":{}}}' * 2,
                                     b'{"x": "' + b"a" * (300 * 1024) + b'"}']))
    return body, f"{which} {named['kind']} {level}"


def stripe_expects_200(body: bytes) -> bool:
    """What the gateway must answer a verified event: 200 for a JSON event with a ``type``
    string and a ``data.object`` object (whatever it says), 400 otherwise (or 413: too big)."""
    try:
        doc = orjson.loads(body)  # RFC 8259 (no NaN, numbers within a double's range), as the gateway reads it
    except orjson.JSONDecodeError:
        return False
    data = doc.get("data") if isinstance(doc, dict) else None
    return (isinstance(doc, dict) and isinstance(doc.get("type"), str) and isinstance(data, dict)
            and isinstance(data.get("object"), dict))


def utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def stripe_lib_accepts(body: bytes, header: str, secret: str) -> bool:
    try:
        stripe_lib.WebhookSignature.verify_header(body.decode("utf-8", "replace"), header, secret, tolerance=300)
    except stripe_lib.SignatureVerificationError:
        return False
    except TypeError:  # the library's own answer to a non-ASCII v1 (hmac.compare_digest of str)
        return False
    return True



@st.composite
def stripe_headers(draw: st.DrawFn, body: bytes, secret: str) -> tuple[list[tuple[str, bytes]], str]:
    """Hostile ``Stripe-Signature`` headers (and none, and several): what is sent, and its shape."""
    now = int(time.time())
    good = stripe_sign(secret, now, body)
    junk = "".join(c for c in draw(text_values) if c >= " " and c != "\x7f")
    shape = draw(st.sampled_from(["no t", "many v1", "too many v1", "huge t", "negative t", "float t", "stale",
                                  "future", "non-ascii", "duplicate", "none", "empty", "junk", "other secret",
                                  "v0 only", "spaces", "t twice"]))
    value: str | None = {
        "no t": f"v1={good}",
        "many v1": f"t={now}," + ",".join(f"v1={'0' * 64}" for _ in range(draw(st.integers(1, 14)))) + f",v1={good}",
        "too many v1": f"t={now}," + ",".join(f"v1={'0' * 64}" for _ in range(40)) + f",v1={good}",
        "huge t": f"t={'9' * draw(st.integers(12, 5000))},v1={good}",
        "negative t": f"t=-{now},v1={good}",
        "float t": f"t={now}.5,v1={good}",
        "stale": f"t={now - 400},v1={stripe_sign(secret, now - 400, body)}",
        "future": f"t={now + 400},v1={stripe_sign(secret, now + 400, body)}",
        "non-ascii": f"t={now},v1={good[:10]}é{junk}",
        "none": None,
        "empty": "",
        "junk": junk,
        "other secret": f"t={now},v1={stripe_sign('whsec_other', now, body)}",
        "v0 only": f"t={now},v0={good}",
        "spaces": f"  t = {now} , v1 = {good}  ",
        "t twice": f"t={now + 1000},v1={good},t={now}",
        "duplicate": f"t={now},v1={good}",
    }[shape]
    headers = [("Content-Type", b"application/json")]
    if value is not None:  # (h11 sends no blank around a value)
        headers.append(("Stripe-Signature", value.strip().encode()))
    if shape == "duplicate":  # two headers: a forged one beside the good one
        headers.insert(0, ("Stripe-Signature", f"t={now},v1={'f' * 64}".encode()))
    return headers, shape




# -- Adyen ---------------------------------------------------------------------------------------------

ADYEN_CODES = ["AUTHORISATION", "CAPTURE", "CAPTURE_FAILED", "CANCELLATION", "TECHNICAL_CANCEL", "REFUND",
               "REFUND_FAILED", "CANCEL_OR_REFUND", "REPORT_AVAILABLE", "authorisation", ""]
_KIND_CODES = {"charge": "AUTHORISATION", "authorization": "AUTHORISATION", "capture": "CAPTURE",
               "void": "CANCELLATION", "refund": "REFUND"}
_SIGNED = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference", "eventCode", "success")


def _signable(item: dict[str, Any]) -> bool:
    """Whether the gateway can read ``item``'s signed fields (Adyen's are strings; an
    amount's value an integer): an item of other types is refused before its signature."""
    amount = item.get("amount")
    if not isinstance(amount, dict) or "value" not in amount or "currency" not in amount:
        return False
    values = [item[k] for k in _SIGNED if k in item] + [amount["value"], amount["currency"]]
    return all(isinstance(v, str) or (type(v) is int) for v in values)


@st.composite
def adyen_items(draw: st.DrawFn, shops: Shops, own: str) -> tuple[dict[str, Any], bool, str]:
    """One notification item (a ``NotificationRequestItem``'s content), whether the
    gateway must take it (verified, the account's own), and what it names."""
    named, which = _names(draw, shops, own)
    code = draw(st.sampled_from([_KIND_CODES.get(named["kind"], "AUTHORISATION")] + ADYEN_CODES) | text_values)
    value = draw(amounts)
    if which == "own" and named["status"] == "unknown":
        # About the attempt left unknown: always an AUTHORISATION for other money, so it
        # is never a valid outcome of it (the last test sends that one).
        code, value = "AUTHORISATION", named["amount"] + draw(st.integers(1, 10**6)) * draw(st.sampled_from([1, -1]))
    item: dict[str, Any] = {
        "pspReference": draw(st.sampled_from([named["processor_id"] or "", str(named["processor_id"])]) | ids),
        "originalReference": draw(st.sampled_from([named["processor_id"] or ""]) | ids),
        "merchantAccountCode": ADYEN_ACCOUNTS[own],
        "merchantReference": named["reference"],
        "amount": {"value": value, "currency": draw(st.sampled_from([named["currency"]]) | currencies)},
        "eventCode": code,
        "success": draw(st.sampled_from(["true", "false", "TRUE", "", True, None, 1])),
        "reason": draw(text_values),
        "eventDate": "2026-12-03T10:00:00+01:00",
    }
    if not (which == "own" and named["status"] == "unknown"):
        item = _mangled(draw, item, list(item))
    item = _with_card_numbers(draw, item)
    signature = draw(st.sampled_from(["own"] * 6 + ["other key", "garbage", "missing", "not base64", "huge"]))
    clean = _signable(item) and all(item.get(k) is not None for k in _SIGNED if k in item)
    extra: dict[str, Any] = draw(st.dictionaries(st.sampled_from(["modification.action", "authCode", "hmacSignature"]),
                                                 json_values, max_size=2))
    extra = _with_card_numbers(draw, extra)
    if signature in ("own", "other key") and clean:
        key = ADYEN_KEYS[own] if signature == "own" else ADYEN_KEYS["B" if own == "A" else "A"]
        extra["hmacSignature"] = adyen_util.generate_notification_sig(copy.deepcopy({**item, "additionalData": {}}),
                                                                      key).decode()
    elif signature == "missing":
        extra.pop("hmacSignature", None)
    else:
        extra["hmacSignature"] = {"garbage": base64.b64encode(b"x" * 32).decode(), "not base64": "%%%é",
                                  "huge": "A" * 100_000}.get(signature, base64.b64encode(b"y" * 32).decode())
    if draw(st.integers(0, 7)) == 0:
        item["merchantAccountCode"] = draw(st.sampled_from([ADYEN_ACCOUNTS["B" if own == "A" else "A"]]) | text_values)
        clean = False  # the signature no longer covers it (or it is another account's)
    item["additionalData"] = extra if draw(st.integers(0, 15)) else draw(json_values)
    accepted = signature == "own" and clean and item.get("merchantAccountCode") == ADYEN_ACCOUNTS[own] \
        and isinstance(item["additionalData"], dict) \
        and item["additionalData"].get("hmacSignature") == extra.get("hmacSignature")
    # Adyen's library signs a signed field's absence as "", as the gateway reads it.
    return item, accepted, f"{which} {named['kind']}"


def _rfc8259(body: bytes) -> bool:
    """Whether the gateway reads ``body`` as JSON: a NaN or Infinity that ``json.dumps``
    wrote into an unsigned field (``reason``, ``additionalData``) makes the whole body not
    JSON, a 400 however well its items are signed."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


@st.composite
def adyen_bodies(draw: st.DrawFn, shops: Shops, own: str) -> tuple[bytes, str | int, str]:
    items = draw(st.lists(adyen_items(shops, own), min_size=1, max_size=4))
    wrapped: Any = [{"NotificationRequestItem": item} for item, _, _ in items]
    accepted = all(ok for _, ok, _ in items)
    shape = draw(st.sampled_from(["batch"] * 8 + ["bare items", "items not a list", "empty", "not an object",
                                                  "not JSON", "too big"]))
    doc: Any = {"live": "false", "notificationItems": wrapped}
    if shape == "bare items":
        doc["notificationItems"] = [item for item, _, _ in items]
    elif shape == "items not a list":
        doc["notificationItems"] = draw(json_values.filter(lambda v: not isinstance(v, list)))
    elif shape == "empty":
        doc["notificationItems"] = []
    elif shape == "not an object":
        doc = wrapped
    body = json.dumps(doc, allow_nan=True).encode()
    if shape == "not JSON":
        body = draw(st.sampled_from([b"", b"{", b"\xff", b"[accepted]"]) | st.binary(max_size=50))
    elif shape == "too big":
        body = json.dumps({"notificationItems": wrapped, "pad": "p" * (300 * 1024)}).encode()
    if len(body) > 256 * 1024:  # the route's limit (processors/endpoints.py)
        expected: str | int = 413
    elif shape == "batch" and accepted and _rfc8259(body):
        expected = "adyen"
    else:
        expected = 400
    return body, expected, f"{shape}: " + ", ".join(why for _, _, why in items)
