"""Stripe webhooks (connectors/stripe_webhooks.py): the ``Stripe-Signature`` check
cross-checked with Stripe's own library (``stripe.Webhook.construct_event``), the events
mapped case by case, and events as localstripe really sends them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import stripe as stripe_lib

from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    ProcessorEvent,
    WebhookRejected,
    WebhookReply,
)
from paygate_server.processing.connectors.stripe import KIND, StripeConnector
from paygate_server.processing.connectors.stripe_webhooks import TOLERANCE_S, sign
from tests.support.eventually import eventually
from tests.support.http_stub import Reply, Seen, StubServer
from tests.support.localstripe import SECRET_KEY, localstripe_or_skip

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the tables readable
SECRET = "whsec_test_0123456789abcdef"
NOW = 1_780_000_000
BODY = orjson.dumps({"id": "evt_1", "object": "event", "type": "customer.created",
                     "data": {"object": {"id": "cus_1", "object": "customer"}}})


def connector(secret: str = SECRET, now: float = NOW) -> StripeConnector:
    built = KIND.build(KIND.complete_settings({}), {"secretKey": "sk_test_x", "webhookSecret": secret},
                       clock=lambda: now)
    assert isinstance(built, StripeConnector)
    return built


def header(body: bytes = BODY, *, t: int = NOW, secret: str = SECRET, extra: str = "") -> str:
    return f"t={t},v1={sign(secret, t, body)}{extra}"


def ours(sig: str | None, body: bytes = BODY, *, now: float = NOW) -> bool:
    try:
        connector(now=now).parse_webhook({} if sig is None else {"stripe-signature": sig}, body)
    except WebhookRejected:
        return False
    return True


def theirs(sig: str | None, body: bytes = BODY) -> bool:
    """Stripe's library, with the real clock (it has no other)."""
    try:
        stripe_lib.Webhook.construct_event(body, sig, SECRET, tolerance=TOLERANCE_S)
    except (stripe_lib.SignatureVerificationError, ValueError):
        return False
    return True


# -- signatures, cross-checked ---------------------------------------------------------------------------

def _cases(now: int) -> dict[str, tuple[str | None, bytes]]:
    other = sign(SECRET, now, b"something else")
    return {
        "valid": (header(t=now), BODY),
        "valid among several v1 (a secret being rolled)": (f"t={now},v1={other},v1={sign(SECRET, now, BODY)}", BODY),
        "valid with a v0 beside it": (header(t=now, extra=",v0=deadbeef"), BODY),
        "tampered body": (header(t=now), BODY.replace(b"cus_1", b"cus_2")),
        "wrong secret": (header(t=now, secret="whsec_other"), BODY),
        "stale timestamp": (header(t=now - TOLERANCE_S - 60), BODY),
        "only v0": (f"t={now},v0={sign(SECRET, now, BODY)}", BODY),
        "no timestamp": (f"v1={sign(SECRET, now, BODY)}", BODY),
        "no header": (None, BODY),
        "garbage": ("nonsense", BODY),
        "timestamp of another signature": (f"t={now + 1},v1={sign(SECRET, now, BODY)}", BODY),
    }


ACCEPTED = {"valid", "valid among several v1 (a secret being rolled)", "valid with a v0 beside it"}


@pytest.mark.parametrize("case", list(_cases(NOW)))
def test_our_verdict_is_stripes(case: str) -> None:
    now = int(time.time())
    sig, body = _cases(now)[case]
    assert ours(sig, body, now=now) == theirs(sig, body) == (case in ACCEPTED)


def test_a_timestamp_just_inside_the_tolerance_is_accepted_by_both() -> None:
    now = int(time.time())
    sig = header(t=now - TOLERANCE_S + 30)
    assert ours(sig, now=now) and theirs(sig)


def test_a_timestamp_far_in_the_future_is_refused_by_us_only() -> None:
    # Stripe's library checks only age; a clock that far ahead is no better: stricter here.
    now = int(time.time())
    sig = header(t=now + TOLERANCE_S + 60)
    assert theirs(sig) and not ours(sig, now=now)


@pytest.mark.parametrize("digits", [13, 400, 4301, 10_000])
def test_a_timestamp_of_too_many_digits_is_outside_the_tolerance(digits: int) -> None:
    # Read as a number, a 400-digit "t" overflowed the comparison with the clock and one of
    # over 4300 digits was past int()'s limit: a 500 instead of a rejection.
    now = int(time.time())
    sig = f"t={'9' * digits},v1={sign(SECRET, now, BODY)}"
    with pytest.raises(WebhookRejected, match="outside the tolerance"):
        connector(now=now + 0.5).parse_webhook({"stripe-signature": sig}, BODY)  # the clock is a float
    assert not theirs(sig)


def test_the_clock_is_injectable() -> None:
    sig = header(t=NOW)
    assert ours(sig, now=NOW + TOLERANCE_S) and not ours(sig, now=NOW + TOLERANCE_S + 1)


def test_rejections_name_the_reason_only() -> None:
    with pytest.raises(WebhookRejected) as raised:
        connector().parse_webhook({"stripe-signature": header(secret="whsec_other")}, BODY)
    assert str(raised.value) == "signature mismatch"
    for text in (SECRET, "cus_1", sign(SECRET, NOW, BODY)):
        assert text not in str(raised.value)


def test_a_verified_body_that_is_not_an_event_is_rejected() -> None:
    for body in (b"not json", b"[]", b'{"type": "x"}'):
        with pytest.raises(WebhookRejected):
            connector().parse_webhook({"stripe-signature": header(body)}, body)


# -- events, case by case -------------------------------------------------------------------------------------

def _parse(kind: str, obj: dict[str, Any]) -> WebhookReply:
    body = orjson.dumps({"id": "evt_1", "object": "event", "type": kind, "data": {"object": obj}})
    return connector().parse_webhook({"stripe-signature": header(body)}, body)


def _pi(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_1", "object": "payment_intent", "status": status,
            "metadata": {"paygate_reference": "txn_1"}, **fields}


def test_the_reply_is_what_stripe_expects() -> None:
    reply = _parse("customer.created", {"id": "cus_1"})
    assert (reply.events, reply.status, reply.body, reply.content_type) == (
        (), 200, b'{"received":true}', "application/json")


def test_an_automatic_intent_succeeded_is_the_charge() -> None:
    (event,) = _parse("payment_intent.succeeded", _pi("succeeded", capture_method="automatic",
                                                      latest_charge="ch_1")).events
    assert event == ProcessorEvent("charge", ChargeResult("txn_1", O.APPROVED, auth_code="ch_1", processor_id="pi_1"),
                                   "pi_1")


def test_a_manual_intent_succeeded_is_the_capture() -> None:
    pi = _pi("succeeded", capture_method="manual", latest_charge="ch_1")
    pi["metadata"]["paygate_capture"] = "cap_1"
    (event,) = _parse("payment_intent.succeeded", pi).events
    assert event == ProcessorEvent("capture", ChargeResult("cap_1", O.APPROVED), "pi_1")


def test_a_manual_intent_succeeded_without_the_tag_is_found_by_the_intent() -> None:
    (event,) = _parse("payment_intent.succeeded", _pi("succeeded", capture_method="manual")).events
    assert (event.kind, event.result.reference, event.payment_processor_id) == ("capture", "", "pi_1")


def test_amount_capturable_updated_is_the_authorization() -> None:
    (event,) = _parse("payment_intent.amount_capturable_updated",
                      _pi("requires_capture", capture_method="manual", latest_charge="ch_1")).events
    assert event == ProcessorEvent("charge", ChargeResult("txn_1", O.APPROVED, auth_code="ch_1", processor_id="pi_1"),
                                   "pi_1")


def test_payment_failed_is_a_decline() -> None:
    pi = _pi("requires_payment_method", last_payment_error={"code": "card_declined",
                                                            "decline_code": "insufficient_funds"})
    (event,) = _parse("payment_intent.payment_failed", pi).events
    assert (event.kind, event.result.reference, event.result.outcome, event.result.decline_code) == (
        "charge", "txn_1", O.DECLINED, "insufficient_funds")


def test_canceled_is_the_void() -> None:
    pi = _pi("canceled", capture_method="manual", cancellation_reason="requested_by_customer")
    pi["metadata"]["paygate_void"] = "void_1"
    (event,) = _parse("payment_intent.canceled", pi).events
    assert event == ProcessorEvent("void", ChargeResult("void_1", O.APPROVED), "pi_1")


def test_canceled_by_stripe_is_an_expired_authorization() -> None:
    (event,) = _parse("payment_intent.canceled", _pi("canceled", capture_method="manual",
                                                     cancellation_reason="automatic")).events
    assert (event.kind, event.result.reference, event.result.outcome, event.result.decline_code,
            event.payment_processor_id) == ("void", "", O.DECLINED, "authorization_expired", "pi_1")


@pytest.mark.parametrize("kind", ["refund.created", "refund.updated", "refund.failed", "charge.refund.updated"])
@pytest.mark.parametrize(("status", "outcome"), [("succeeded", O.APPROVED), ("failed", O.DECLINED),
                                                 ("canceled", O.DECLINED), ("pending", None)])
def test_refund_events(kind: str, status: str, outcome: ChargeOutcome | None) -> None:
    refund = {"id": "re_1", "object": "refund", "status": status, "payment_intent": "pi_1",
              "metadata": {"paygate_reference": "re_ref"}}
    events = _parse(kind, refund).events
    if outcome is None:
        assert events == ()  # not an outcome yet
    else:
        assert [(e.kind, e.result.reference, e.result.outcome, e.payment_processor_id) for e in events] == [
            ("refund", "re_ref", outcome, "pi_1")]


def test_a_refund_not_made_by_the_gateway_is_no_event() -> None:
    assert _parse("refund.updated", {"id": "re_1", "status": "succeeded", "metadata": {}}).events == ()


@pytest.mark.parametrize("kind", ["charge.succeeded", "payment_intent.created", "payment_intent.processing",
                                  "customer.created", "payout.paid"])
def test_other_events_say_nothing(kind: str) -> None:
    assert _parse(kind, _pi("succeeded", latest_charge="ch_1")).events == ()


def test_a_succeeded_event_without_a_charge_says_nothing() -> None:
    assert _parse("payment_intent.succeeded", _pi("succeeded", capture_method="automatic")).events == ()


# -- as localstripe sends them -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from localstripe_or_skip(tmp_path_factory)


@pytest.fixture
async def receiver(localstripe_url: str) -> AsyncIterator[StubServer]:
    async with StubServer(lambda seen: Reply(200, b"")) as server:
        answer = httpx.post(f"{localstripe_url}/_config/webhooks/paygate", timeout=5.0, data={
            "url": server.url + "/hooks", "secret": SECRET, "events[]": ["payment_intent.succeeded",
                                                                          "payment_intent.payment_failed"]})
        assert answer.status_code == 200
        yield server


async def _delivered(receiver: StubServer, kind: str, pi_id: str) -> Seen:
    def find() -> Seen | None:
        for seen in receiver.seen:
            event = orjson.loads(seen.body)
            if event["type"] == kind and event["data"]["object"]["id"] == pi_id:
                return seen
        return None
    found = await eventually(find, what=f"{kind} for {pi_id}")
    assert found is not None
    return found


async def test_localstripes_events_verify_and_map(localstripe_url: str, receiver: StubServer) -> None:
    async with StripeConnector(SECRET_KEY, SECRET, api_base=localstripe_url) as stripe:
        approved = await stripe.charge(ChargeRequest("txn_hook_ok", "pi_gw", "mer_1", 700, "USD",
                                                     CardDetails("4242424242424242", 12, 2030, "123")))
        declined = await stripe.charge(ChargeRequest("txn_hook_no", "pi_gw", "mer_1", 700, "USD",
                                                     CardDetails("4000000000000341", 12, 2030, "123")))
        assert approved.processor_id and declined.processor_id
        ok = await _delivered(receiver, "payment_intent.succeeded", approved.processor_id)
        no = await _delivered(receiver, "payment_intent.payment_failed", declined.processor_id)
        for seen in (ok, no):
            assert theirs(seen.headers["stripe-signature"], seen.body)
        (event,) = stripe.parse_webhook(ok.headers, ok.body).events
        assert (event.kind, event.result.reference, event.result.outcome, event.result.auth_code) == (
            "charge", "txn_hook_ok", O.APPROVED, approved.auth_code)
        (event,) = stripe.parse_webhook(no.headers, no.body).events
        assert (event.kind, event.result.reference, event.result.outcome, event.result.decline_code) == (
            "charge", "txn_hook_no", O.DECLINED, "generic_decline")
        with pytest.raises(WebhookRejected):
            stripe.parse_webhook(ok.headers, ok.body.replace(b"txn_hook_ok", b"txn_hook_xx"))
