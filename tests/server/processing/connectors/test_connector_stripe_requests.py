"""The Stripe connector's requests and flows through the transport seam (a scripted
``Transport``): what is sent (form bodies, Authorization, Stripe-Version, Idempotency-Key,
no card data where none belongs), in which order, and what each scripted answer becomes —
including the cases localstripe cannot produce (timeouts before and after the confirm,
5xx, Stripe's embedded payment intents, settlement reports)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from paygate_server.http1client import HttpTimeout, Response
from paygate_server.processing.connectors import (
    CaptureRequest,
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    ConnectorError,
    RefundRequest,
    RefundResult,
    VoidRequest,
    connector_kind,
)
from paygate_server.processing.connectors.stripe import KIND, STRIPE_VERSION, StripeConnector

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the tables readable
KEY = "sk_test_51Hsecretsecretsecret"
REF = "txn_stripe_1"
NUMBER = "4242424242424242"
CARD = CardDetails(NUMBER, 12, 2030, "123")


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    form: list[tuple[str, str]]
    idempotent: bool

    def field(self, name: str) -> str | None:
        return dict(self.form).get(name)


Handler = Callable[[Sent], Response | BaseException]


@dataclass
class Script:
    """A Transport whose answers a function gives; it keeps what was sent."""

    handler: Handler
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0, *, idempotent: bool = False) -> Response:
        parts = urlsplit(target)
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(parts.query):
            query.setdefault(name, []).append(value)
        lines = [line.split(": ", 1) for line in headers.decode().split("\r\n") if line]
        seen = Sent(method, parts.path, query, {k.lower(): v for k, v in lines}, parse_qsl(body.decode()), idempotent)
        self.sent.append(seen)
        answer = self.handler(seen)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True

    def paths(self) -> list[str]:
        return [f"{s.method} {s.path}" for s in self.sent]


def ok(obj: dict[str, Any], status: int = 200) -> Response:
    return Response(status, orjson.dumps(obj), False)


def err(status: int, **error: Any) -> Response:
    return Response(status, orjson.dumps({"error": {"type": "invalid_request_error", **error}}), False)


def pi(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_1", "object": "payment_intent", "status": status,
            "metadata": {"paygate_reference": REF}, **fields}


def stripe_like(confirm: Response | BaseException | None = None, **overrides: Response | BaseException) -> Handler:
    """Stripe's happy answers per request, with some replaced."""
    def handle(sent: Sent) -> Response | BaseException:
        route = f"{sent.method} {sent.path}"
        if route in overrides:
            return overrides[route]
        if route == "POST /v1/payment_methods":
            return ok({"id": "pm_1", "object": "payment_method"})
        if route == "POST /v1/payment_intents":
            return ok(pi("requires_confirmation"))
        if route == "POST /v1/payment_intents/pi_1/confirm":
            return confirm if confirm is not None else ok(pi("succeeded", latest_charge="ch_1"))
        if route == "GET /v1/payment_intents/pi_1":
            return ok(pi("requires_confirmation"))
        if route == "POST /v1/payment_intents/pi_1":
            return ok(pi("requires_capture", capture_method="manual"))
        if route == "POST /v1/payment_intents/pi_1/capture":
            return ok(pi("succeeded", capture_method="manual"))
        if route == "POST /v1/payment_intents/pi_1/cancel":
            return ok(pi("canceled", capture_method="manual", cancellation_reason="requested_by_customer"))
        if route == "POST /v1/refunds":
            return ok({"id": "re_1", "object": "refund", "status": "succeeded"})
        return err(404, code="resource_missing")
    return handle


def connector(handler: Handler) -> tuple[StripeConnector, Script]:
    script = Script(handler)
    return StripeConnector(KEY, "whsec_test", api_base="https://api.stripe.com", transport=script), script


def no_secrets(result: ChargeResult | RefundResult) -> None:
    for text in (repr(result), result.message or ""):
        assert KEY not in text and NUMBER not in text and "123" not in (result.message or "").split()


# -- what a charge sends -------------------------------------------------------------------------------

async def test_a_charge_is_payment_method_create_record_confirm() -> None:
    events: list[str] = []
    stripe, script = connector(stripe_like())

    async def record(pi_id: str) -> None:
        events.append(f"record {pi_id} after {len(script.sent)} requests")

    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 1999, "EUR", CARD, record_processor_id=record))
    assert result == ChargeResult(REF, O.APPROVED, auth_code="ch_1", processor_id="pi_1")
    assert script.paths() == ["POST /v1/payment_methods", "POST /v1/payment_intents", "POST /v1/payment_intents/pi_1/confirm"]
    assert events == ["record pi_1 after 2 requests"]  # before the confirm
    pm, create, confirm = script.sent
    assert pm.form == [("type", "card"), ("card[number]", NUMBER), ("card[exp_month]", "12"),
                       ("card[exp_year]", "2030"), ("card[cvc]", "123")]
    assert dict(create.form) == {
        "amount": "1999", "currency": "eur", "capture_method": "automatic", "payment_method": "pm_1",
        "payment_method_types[]": "card", "metadata[paygate_reference]": REF, "metadata[paygate_intent]": "pi_gw",
        "metadata[paygate_merchant]": "mer_1"}
    assert confirm.form == []
    for sent, key in zip(script.sent, [f"{REF}-pm", f"{REF}-create", f"{REF}-confirm"], strict=True):
        assert sent.headers["idempotency-key"] == key
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.headers["stripe-version"] == STRIPE_VERSION == "2024-06-20"
        assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
        assert sent.idempotent  # Stripe replays by key: a re-send on a closed idle connection is safe
    # The card goes to the payment method only.
    assert all(NUMBER not in str(s.form) and "123" not in dict(s.form).values() for s in script.sent[1:])


async def test_an_authorization_is_a_manual_capture_intent() -> None:
    answers = stripe_like(confirm=ok(pi("requires_capture", capture_method="manual", latest_charge="ch_9")))
    stripe, script = connector(answers)
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD, capture=False))
    assert (result.outcome, result.auth_code) == (O.APPROVED, "ch_9")
    assert script.sent[1].field("capture_method") == "manual"


async def test_no_cvc_sends_none() -> None:
    stripe, script = connector(stripe_like())
    await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CardDetails(NUMBER, 1, 2031)))
    assert [name for name, _ in script.sent[0].form] == ["type", "card[number]", "card[exp_month]", "card[exp_year]"]


async def test_a_reference_unfit_for_a_header_sends_nothing() -> None:
    stripe, script = connector(stripe_like())
    result = await stripe.charge(ChargeRequest("txn bad\r\nX: 1", "pi_gw", "mer_1", 500, "USD", CARD))
    assert result.outcome is O.FAILED and script.sent == []


# -- before the confirm nothing can be charged ------------------------------------------------------------

class RecordFailed(Exception):
    pass


async def test_a_failed_record_stops_before_the_confirm() -> None:
    stripe, script = connector(stripe_like())

    async def record(pi_id: str) -> None:
        raise RecordFailed(f"database down while recording {pi_id} for {NUMBER}")

    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD, record_processor_id=record))
    assert (result.outcome, result.processor_id) == (O.FAILED, "pi_1")
    assert result.message == "the processor id was not recorded (RecordFailed): nothing charged"
    assert "POST /v1/payment_intents/pi_1/confirm" not in script.paths()


@pytest.mark.parametrize(("route", "answer", "outcome"), [
    ("POST /v1/payment_methods", HttpTimeout("t"), O.FAILED),
    ("POST /v1/payment_methods", err(500, code="api_error"), O.FAILED),
    ("POST /v1/payment_methods", err(402, type="card_error", code="incorrect_number"), O.DECLINED),
    ("POST /v1/payment_methods", err(429, code="rate_limit"), O.RETRY),
    ("POST /v1/payment_intents", HttpTimeout("t"), O.FAILED),
    ("POST /v1/payment_intents", Response(200, b"not json", False), O.FAILED),
    ("POST /v1/payment_intents", ok({"object": "payment_intent"}), O.FAILED),  # no id
    ("POST /v1/payment_intents", err(400, code="parameter_invalid_integer"), O.FAILED),
    ("POST /v1/payment_intents", err(401), O.FAILED),
    ("POST /v1/payment_intents", err(429, code="lock_timeout"), O.RETRY),
])
async def test_trouble_before_the_confirm(route: str, answer: Response | BaseException, outcome: ChargeOutcome) -> None:
    recorded: list[str] = []

    async def record(pi_id: str) -> None:
        recorded.append(pi_id)

    stripe, script = connector(stripe_like(**{route: answer}))
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD, record_processor_id=record))
    assert result.outcome is outcome
    assert not any(path.endswith("/confirm") for path in script.paths())
    assert recorded == []
    no_secrets(result)


# -- the confirm ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "outcome", "code"), [
    (HttpTimeout("t"), O.UNKNOWN, None),
    (ConnectionResetError(), O.UNKNOWN, None),
    (err(500, type="api_error"), O.UNKNOWN, None),
    (err(503), O.UNKNOWN, None),
    (Response(200, b"<html>", False), O.UNKNOWN, None),
    (ok(pi("processing")), O.UNKNOWN, None),
    (ok(pi("some_new_status", latest_charge="ch_1")), O.UNKNOWN, None),
    (ok({**pi("succeeded", latest_charge="ch_1"), "id": "pi_other"}), O.UNKNOWN, None),
    (err(409, type="idempotency_error"), O.UNKNOWN, None),
    (err(402, type="card_error", code="card_declined", decline_code="insufficient_funds"), O.DECLINED,
     "insufficient_funds"),
    (ok(pi("requires_payment_method", last_payment_error={"code": "expired_card"})), O.DECLINED, "expired_card"),
    (ok(pi("requires_action", next_action={"type": "redirect_to_url"})), O.DECLINED, "authentication_required"),
    (err(429, code="rate_limit"), O.RETRY, None),
])
async def test_the_confirms_answers(answer: Response | BaseException, outcome: ChargeOutcome, code: str | None) -> None:
    stripe, _ = connector(stripe_like(confirm=answer))
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD))
    assert (result.outcome, result.decline_code, result.processor_id) == (outcome, code, "pi_1")
    no_secrets(result)


async def test_a_400_confirm_with_the_intent_embedded_reads_the_intent() -> None:
    # Real Stripe: confirming twice with other parameters is refused, with the intent.
    answer = err(400, code="payment_intent_unexpected_state", payment_intent=pi("succeeded", latest_charge="ch_1"))
    stripe, script = connector(stripe_like(confirm=answer))
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD))
    assert (result.outcome, result.auth_code) == (O.APPROVED, "ch_1")
    assert "GET /v1/payment_intents/pi_1" not in script.paths()


async def test_a_400_confirm_without_the_intent_retrieves_it() -> None:
    stripe, script = connector(stripe_like(confirm=err(400, message="Bad request")))
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD))
    assert result.outcome is O.FAILED  # still requires_confirmation: nothing charged
    assert script.paths()[-1] == "GET /v1/payment_intents/pi_1"
    assert "idempotency-key" not in script.sent[-1].headers and "content-type" not in script.sent[-1].headers


# -- captures, voids, refunds -----------------------------------------------------------------------------------------

async def test_a_capture_tags_then_captures() -> None:
    stripe, script = connector(stripe_like())
    result = await stripe.capture(CaptureRequest("cap_1", REF, 700, "USD", charge_processor_id="pi_1"))
    assert result == ChargeResult("cap_1", O.APPROVED, processor_id="pi_1")
    tag, capture = script.sent
    assert (tag.path, tag.form, tag.headers["idempotency-key"]) == (
        "/v1/payment_intents/pi_1", [("metadata[paygate_capture]", "cap_1")], "cap_1-tag")
    assert (capture.path, capture.form, capture.headers["idempotency-key"]) == (
        "/v1/payment_intents/pi_1/capture", [("amount_to_capture", "700")], "cap_1")


@pytest.mark.parametrize(("answer", "outcome", "code"), [
    (HttpTimeout("t"), O.UNKNOWN, None),
    (err(500), O.UNKNOWN, None),
    (ok(pi("canceled", cancellation_reason="automatic")), O.DECLINED, "authorization_expired"),
    (err(400, code="payment_intent_unexpected_state",
         payment_intent=pi("canceled", cancellation_reason="requested_by_customer")), O.DECLINED, "authorization_voided"),
    (err(400, code="amount_too_large", payment_intent=pi("requires_capture")), O.FAILED, None),
])
async def test_the_captures_answers(answer: Response | BaseException, outcome: ChargeOutcome, code: str | None) -> None:
    stripe, _ = connector(stripe_like(**{"POST /v1/payment_intents/pi_1/capture": answer}))
    result = await stripe.capture(CaptureRequest("cap_1", REF, 700, "USD", charge_processor_id="pi_1"))
    assert (result.outcome, result.decline_code) == (outcome, code)


async def test_a_failed_tag_captures_nothing() -> None:
    stripe, script = connector(stripe_like(**{"POST /v1/payment_intents/pi_1": HttpTimeout("t")}))
    result = await stripe.capture(CaptureRequest("cap_1", REF, 700, "USD", charge_processor_id="pi_1"))
    assert result.outcome is O.FAILED
    assert script.paths() == ["POST /v1/payment_intents/pi_1"]


async def test_no_recorded_intent_no_request() -> None:
    stripe, script = connector(stripe_like())
    assert (await stripe.capture(CaptureRequest("cap_1", REF, 700, "USD"))).outcome is O.FAILED
    assert (await stripe.void(VoidRequest("void_1", REF))).outcome is O.FAILED
    assert (await stripe.refund(RefundRequest("re_1", REF, 100, "USD"))).outcome is O.DECLINED
    assert script.sent == []


async def test_a_void_tags_then_cancels() -> None:
    stripe, script = connector(stripe_like())
    result = await stripe.void(VoidRequest("void_1", REF, charge_processor_id="pi_1"))
    assert result.outcome is O.APPROVED
    assert script.paths() == ["POST /v1/payment_intents/pi_1", "POST /v1/payment_intents/pi_1/cancel"]
    assert script.sent[0].form == [("metadata[paygate_void]", "void_1")]
    assert script.sent[1].headers["idempotency-key"] == "void_1" and script.sent[1].form == []


async def test_a_void_of_a_captured_authorization_is_unknown_not_refused() -> None:
    answer = err(400, code="payment_intent_unexpected_state",
                 payment_intent=pi("succeeded", amount_received=2500, currency="eur"))
    stripe, _ = connector(stripe_like(**{"POST /v1/payment_intents/pi_1/cancel": answer}))
    result = await stripe.void(VoidRequest("void_1", REF, charge_processor_id="pi_1"))
    assert (result.outcome, result.decline_code) == (O.UNKNOWN, None)
    assert "captured at Stripe outside the gateway (amount_received 2500 eur)" in (result.message or "")


async def test_a_refund_sends_the_intent_amount_and_reference() -> None:
    stripe, script = connector(stripe_like())
    result = await stripe.refund(RefundRequest("re_ref", REF, 250, "USD", charge_processor_id="pi_1"))
    assert result == RefundResult("re_ref", O.APPROVED)
    (sent,) = script.sent
    assert sent.form == [("payment_intent", "pi_1"), ("amount", "250"), ("metadata[paygate_reference]", "re_ref")]
    assert sent.headers["idempotency-key"] == "re_ref"


@pytest.mark.parametrize(("answer", "outcome"), [
    (ok({"id": "re_1", "status": "pending"}), O.UNKNOWN),
    (ok({"id": "re_1", "status": "failed"}), O.DECLINED),
    (err(400, code="charge_already_refunded"), O.DECLINED),
    (HttpTimeout("t"), O.UNKNOWN),
    (err(502), O.UNKNOWN),
])
async def test_the_refunds_answers(answer: Response | BaseException, outcome: ChargeOutcome) -> None:
    stripe, _ = connector(stripe_like(**{"POST /v1/refunds": answer}))
    assert (await stripe.refund(RefundRequest("re_ref", REF, 250, "USD", charge_processor_id="pi_1"))).outcome is outcome


# -- look-ups ------------------------------------------------------------------------------------------------------

async def test_a_charge_without_a_recorded_id_was_never_confirmed() -> None:
    stripe, script = connector(stripe_like())
    assert (await stripe.lookup(REF)).outcome is O.NOT_FOUND
    for kind in ("capture", "void", "refund"):
        assert (await stripe.lookup("x", kind)).outcome is O.UNKNOWN  # type: ignore[arg-type]
    assert script.sent == []


@pytest.mark.parametrize(("answer", "outcome"), [
    (ok(pi("succeeded", latest_charge="ch_1")), O.APPROVED),
    (ok(pi("requires_confirmation")), O.NOT_FOUND),
    (ok({**pi("succeeded", latest_charge="ch_1"), "metadata": {"paygate_reference": "txn_other"}}), O.UNKNOWN),
    (err(404, code="resource_missing"), O.UNKNOWN),  # Stripe created it: its 404 is no "never received"
    (err(500), O.UNKNOWN),
    (err(401), O.UNKNOWN),
    (HttpTimeout("t"), O.UNKNOWN),
])
async def test_a_charge_lookup(answer: Response | BaseException, outcome: ChargeOutcome) -> None:
    stripe, script = connector(stripe_like(**{"GET /v1/payment_intents/pi_1": answer}))
    assert (await stripe.lookup(REF, processor_id="pi_1")).outcome is outcome
    assert script.sent[0].method == "GET" and "idempotency-key" not in script.sent[0].headers


async def test_a_refund_lookup_pages_through_the_intents_refunds() -> None:
    pages = {
        None: {"data": [{"id": "re_a", "status": "succeeded", "metadata": {"paygate_reference": "re_x"}},
                        {"id": "re_b", "status": "succeeded", "metadata": {}}], "has_more": True},
        "re_b": {"data": [{"id": "re_c", "status": "failed", "metadata": {"paygate_reference": "re_ref"}}],
                 "has_more": False},
    }

    def handle(sent: Sent) -> Response:
        assert sent.path == "/v1/refunds"
        assert sent.query["payment_intent"] == ["pi_1"] and sent.query["limit"] == ["100"]
        return ok(pages[sent.query.get("starting_after", [None])[0]])

    stripe, script = connector(handle)
    result = await stripe.lookup("re_ref", "refund", processor_id="pi_1")
    assert result.outcome is O.DECLINED
    assert len(script.sent) == 2
    assert (await stripe.lookup("re_missing", "refund", processor_id="pi_1")).outcome is O.NOT_FOUND


# -- settlement ------------------------------------------------------------------------------------------------------

def _txn(txn_id: str, kind: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"id": txn_id, "object": "balance_transaction", "type": kind, "source": source}


GW_PI = {"id": "pi_a", "capture_method": "automatic",
         "metadata": {"paygate_reference": "txn_a", "paygate_intent": "pi_gw_a", "paygate_merchant": "mer_1"}}
GW_AUTH = {"id": "pi_b", "capture_method": "manual",
           "metadata": {"paygate_reference": "txn_b", "paygate_intent": "pi_gw_b", "paygate_capture": "cap_b"}}


async def test_a_settlement_report_from_balance_transactions() -> None:
    page1 = {"data": [
        _txn("txn_1", "charge", {"id": "ch_a", "amount": 1000, "amount_captured": 1000, "currency": "eur",
                                 "payment_intent": GW_PI}),
        _txn("txn_2", "charge", {"id": "ch_b", "amount": 900, "amount_captured": 600, "currency": "usd",
                                 "payment_intent": GW_AUTH}),
        _txn("txn_3", "payout", {"id": "po_1", "amount": 5, "currency": "usd"}),
    ], "has_more": True}
    page2 = {"data": [
        _txn("txn_4", "refund", {"id": "re_1", "amount": 250, "currency": "eur", "payment_intent": GW_PI,
                                 "metadata": {"paygate_reference": "re_ref"}}),
        _txn("txn_5", "charge", {"id": "ch_x", "amount": 1, "currency": "eur",  # another integration's
                                 "payment_intent": {"id": "pi_x", "metadata": {}}}),
    ], "has_more": False}

    def handle(sent: Sent) -> Response:
        assert (sent.method, sent.path) == ("GET", "/v1/balance_transactions")
        day = int(dt.datetime(2026, 3, 4, tzinfo=dt.UTC).timestamp())
        assert sent.query["created[gte]"] == [str(day)] and sent.query["created[lt]"] == [str(day + 86400)]
        assert sent.query["expand[]"] == ["data.source", "data.source.payment_intent"]
        return ok(page2 if sent.query.get("starting_after") == ["txn_3"] else page1)

    stripe, _ = connector(handle)
    records = await stripe.settlement_report(dt.date(2026, 3, 4))
    assert [(r.kind, r.reference, r.payment_intent_id, r.charge_reference, r.amount, r.currency, r.merchant_id)
            for r in records] == [
        ("charge", "txn_a", "pi_gw_a", None, 1000, "EUR", "mer_1"),
        ("capture", "cap_b", "pi_gw_b", "txn_b", 600, "USD", None),
        ("refund", "re_ref", "pi_gw_a", "txn_a", 250, "EUR", "mer_1"),
    ]


@pytest.mark.parametrize("answer", [HttpTimeout("t"), err(500), Response(200, b"nope", False),
                                    ok({"data": [_txn("t", "charge", {"payment_intent": GW_PI})], "has_more": False})])
async def test_a_settlement_report_that_cannot_be_read_raises(answer: Response | BaseException) -> None:
    stripe, _ = connector(lambda sent: answer)
    with pytest.raises(ConnectorError) as raised:
        await stripe.settlement_report(dt.date(2026, 3, 4))
    assert KEY not in str(raised.value)


# -- the account kind, secrets ---------------------------------------------------------------------------------------

async def test_the_kind_builds_a_connector_with_the_gateways_options() -> None:
    assert connector_kind("stripe") is KIND
    assert KIND.complete_settings({}) == {"apiBase": "https://api.stripe.com"}
    KIND.check_credentials({"secretKey": KEY, "webhookSecret": "whsec_1"})
    script = Script(stripe_like())
    built = KIND.build(KIND.complete_settings({}), {"secretKey": KEY, "webhookSecret": "whsec_1"},
                       connect_timeout=1.0, read_timeout=5.0, max_connections=4, transport=script)
    assert (await built.charge(ChargeRequest(REF, "pi_gw", "mer_1", 1, "USD", CARD))).outcome is O.APPROVED
    await built.aclose()
    assert script.closed
    assert KEY not in repr(built) and "whsec_1" not in repr(built)


def test_a_key_unfit_for_a_header_is_refused_without_its_value() -> None:
    with pytest.raises(ValueError) as raised:
        StripeConnector("sk_test_x\r\nInjected: 1", "whsec")
    assert "sk_test" not in str(raised.value)


async def test_no_result_carries_the_key_or_the_card() -> None:
    leaky = err(402, type="card_error", code="card_declined",
                message=f"Card {NUMBER} declined for key {KEY} cvc 123")
    stripe, _ = connector(stripe_like(confirm=leaky))
    result = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD))
    assert result.outcome is O.DECLINED
    assert result.message == "card_declined"
    no_secrets(result)


async def test_a_refused_connection_is_failed_for_a_charge_and_unknown_for_a_lookup() -> None:
    with socket.socket() as bound:  # bound, never listening: the kernel refuses connections
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        async with StripeConnector(KEY, "whsec", api_base=f"http://127.0.0.1:{port}", connect_timeout=2.0) as stripe:
            charged = await stripe.charge(ChargeRequest(REF, "pi_gw", "mer_1", 500, "USD", CARD))
            looked = await stripe.lookup(REF, processor_id="pi_1")
    assert (charged.outcome, charged.message) == (O.FAILED, "could not connect (ConnectFailed): nothing sent")
    assert looked.outcome is O.UNKNOWN


async def test_cancel_by_reference_has_nothing_to_do() -> None:
    stripe, script = connector(stripe_like())
    assert await stripe.cancel_by_reference(REF, "void_1") is None
    assert script.sent == []
