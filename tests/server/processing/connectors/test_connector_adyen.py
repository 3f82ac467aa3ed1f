"""The Adyen connector's requests and the answer → outcome table, through the Transport
seam (scripted answers shaped like the examples of Adyen's API reference) and through a
scripted server on 127.0.0.1 (the real client, real sockets).

Answer shapes: docs.adyen.com/api-explorer/Checkout/71/post/payments (responses 200/422),
.../post/payments/{paymentPspReference}/captures, /cancels, /refunds and .../post/cancels
(201 "received"); error bodies: docs.adyen.com/development-resources/response-handling;
704: docs.adyen.com/development-resources/api-idempotency.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from paygate_server.http1client import (
    ConnectFailed,
    ConnectionLost,
    HttpTimeout,
    MalformedResponse,
    Response,
    ReusedConnectionClosed,
)
from paygate_server.processing.connectors import (
    CaptureRequest,
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    Connector,
    ConnectorError,
    RefundRequest,
    VoidRequest,
    connector_kind,
)
from paygate_server.processing.connectors.adyen import (
    API_VERSION,
    KIND,
    RESULT_CODES,
    AdyenConnector,
    Operation,
    classify,
    decline_code_for,
)
from tests.support.http_stub import CLOSE, Reply, Seen, StubServer

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcome tables readable
REF = "txn_adyen_1"
PSP = "QFQTPCQ8HXSKGK82"
CARD = CardDetails("4111111111111111", 3, 2030, "737")
API_KEY = "AQEyhmfxK4-secret-api-key-value"
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
MERCHANT = "PaygateECOM"


def _request(capture: bool = True) -> ChargeRequest:
    return ChargeRequest(REF, "pi_1", "mer_1", 1999, "EUR", CARD, capture=capture)


@dataclass
class Sent:
    method: str
    target: str
    headers: dict[str, str]
    body: dict[str, Any]
    idempotent: bool


@dataclass
class Script:
    """A Transport that answers from a list: a Response, or an exception to raise after
    the request was 'written'."""

    answers: list[Response | BaseException]
    sent: list[Sent] = field(default_factory=list)
    closed: bool = False

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0, *, idempotent: bool = False) -> Response:
        lines = [line.split(": ", 1) for line in headers.decode().split("\r\n") if line]
        self.sent.append(Sent(method, target, {k.lower(): v for k, v in lines}, orjson.loads(body), idempotent))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


def _json(status: int, body: Any) -> Response:
    return Response(status, orjson.dumps(body), False)


def _connector(*answers: Response | BaseException) -> tuple[AdyenConnector, Script]:
    script = Script(list(answers))
    connector = AdyenConnector("https://checkout-test.adyen.com", MERCHANT, API_KEY, HMAC_KEY, transport=script)
    return connector, script


AUTHORISED = {"additionalData": {"authCode": "074592"}, "pspReference": PSP, "resultCode": "Authorised",
              "amount": {"currency": "EUR", "value": 1999}, "merchantReference": REF}


def _refused(code: str, reason: str, result_code: str = "Refused") -> dict[str, Any]:
    return {"pspReference": PSP, "resultCode": result_code, "refusalReason": reason,
            "refusalReasonCode": code, "merchantReference": REF}


def _error(status: int, code: str, error_type: str, message: str = "Some text") -> dict[str, Any]:
    return {"status": status, "errorCode": code, "message": message, "errorType": error_type,
            "pspReference": "8816178914079738"}


# --- requests ---------------------------------------------------------------------------------


async def test_a_charge_posts_the_payment_with_the_version_key_and_reference() -> None:
    connector, script = _connector(_json(200, AUTHORISED))
    result = await connector.charge(_request())
    assert (result.outcome, result.auth_code, result.processor_id) == (O.APPROVED, "074592", PSP)
    [sent] = script.sent
    assert (sent.method, sent.target) == ("POST", f"/{API_VERSION}/payments") == ("POST", "/v71/payments")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.headers["idempotency-key"] == REF
    assert sent.headers["content-type"] == "application/json"
    assert sent.idempotent is True
    body = sent.body
    assert body["merchantAccount"] == MERCHANT
    assert body["reference"] == REF
    assert body["amount"] == {"value": 1999, "currency": "EUR"}
    assert body["paymentMethod"] == {"type": "scheme", "number": "4111111111111111", "expiryMonth": "03",
                                     "expiryYear": "2030", "cvc": "737"}
    assert body["shopperInteraction"] == "Ecommerce"
    assert body["returnUrl"].startswith("https://")
    assert "additionalData" not in body  # a charge is captured as the account captures


async def test_an_authorization_asks_for_manual_capture() -> None:
    connector, script = _connector(_json(200, AUTHORISED))
    assert (await connector.charge(_request(capture=False))).outcome is O.APPROVED
    assert script.sent[0].body["additionalData"] == {"manualCapture": "true"}


async def test_a_card_without_cvc_sends_none() -> None:
    connector, script = _connector(_json(200, AUTHORISED))
    card = CardDetails("4111111111111111", 12, 2031)
    await connector.charge(ChargeRequest(REF, "pi_1", "mer_1", 5, "EUR", card))
    assert "cvc" not in script.sent[0].body["paymentMethod"]
    assert script.sent[0].body["paymentMethod"]["expiryMonth"] == "12"


@pytest.mark.parametrize(
    ("call", "path", "body"),
    [
        ("capture", f"/v71/payments/{PSP}/captures",
         {"merchantAccount": MERCHANT, "reference": "cap_1", "amount": {"value": 1500, "currency": "EUR"}}),
        ("void", f"/v71/payments/{PSP}/cancels", {"merchantAccount": MERCHANT, "reference": "void_1"}),
        ("refund", f"/v71/payments/{PSP}/refunds",
         {"merchantAccount": MERCHANT, "reference": "re_1", "amount": {"value": 700, "currency": "EUR"}}),
    ],
)
async def test_modifications_post_to_the_payment_and_are_unknown_until_notified(
        call: str, path: str, body: dict[str, Any]) -> None:
    reference = body["reference"]
    received = {"merchantAccount": MERCHANT, "paymentPspReference": PSP, "pspReference": "JDD6LKT8MBLZNN84",
                "reference": reference, "status": "received", **({"amount": body["amount"]} if "amount" in body else {})}
    connector, script = _connector(_json(201, received))
    if call == "capture":
        result: Any = await connector.capture(CaptureRequest(reference, REF, 1500, "EUR", charge_processor_id=PSP))
    elif call == "void":
        result = await connector.void(VoidRequest(reference, REF, charge_processor_id=PSP))
    else:
        result = await connector.refund(RefundRequest(reference, REF, 700, "EUR", charge_processor_id=PSP))
    assert result.outcome is O.UNKNOWN
    assert result.reference == reference
    assert "notification" in (result.message or "")
    [sent] = script.sent
    assert (sent.method, sent.target, sent.body) == ("POST", path, body)
    assert sent.headers["idempotency-key"] == reference
    assert sent.headers["x-api-key"] == API_KEY


@pytest.mark.parametrize("call", ["capture", "void", "refund"])
async def test_a_modification_without_the_payments_psp_reference_sends_nothing(call: str) -> None:
    connector, script = _connector()
    if call == "capture":
        result: Any = await connector.capture(CaptureRequest("cap_1", REF, 1, "EUR"))
    elif call == "void":
        result = await connector.void(VoidRequest("void_1", REF))
    else:
        result = await connector.refund(RefundRequest("re_1", REF, 1, "EUR"))
    assert result.outcome is O.FAILED
    assert "pspReference" in (result.message or "")
    assert script.sent == []


async def test_cancel_by_reference_posts_the_standalone_cancel() -> None:
    answer = {"merchantAccount": MERCHANT, "paymentReference": REF, "pspReference": "ZKT6LKT8MBLZNN85",
              "reference": "void_x", "status": "received"}
    connector, script = _connector(_json(201, answer))
    result = await connector.cancel_by_reference(REF, "void_x")
    assert (result.outcome, result.reference) == (O.APPROVED, "void_x")  # received: not its outcome
    assert "TECHNICAL_CANCEL" in (result.message or "")
    [sent] = script.sent
    assert (sent.target, sent.body) == ("/v71/cancels", {"merchantAccount": MERCHANT, "paymentReference": REF,
                                                         "reference": "void_x"})
    assert sent.headers["idempotency-key"] == "void_x-cancel"


async def test_cancel_by_reference_never_reuses_the_payments_idempotency_key() -> None:
    """The reconciler gives the cancel the payment's own reference (its notification then
    names the attempt). Adyen keeps an Idempotency-Key unique across the company account,
    every endpoint together: under the payment's key it would answer the payment's first
    answer again and cancel nothing — just when there is an authorization to release."""
    answer = {"merchantAccount": MERCHANT, "paymentReference": REF, "reference": REF, "status": "received"}
    connector, script = _connector(_json(200, {"pspReference": PSP, "resultCode": "Authorised",
                                               "merchantReference": REF}), _json(201, answer))
    await connector.charge(_request(capture=False))
    result = await connector.cancel_by_reference(REF, REF)
    assert result.outcome is O.APPROVED and "TECHNICAL_CANCEL" in (result.message or "")
    payment, cancel = script.sent
    assert cancel.body["reference"] == REF  # the notification names the attempt
    assert cancel.headers["idempotency-key"] != payment.headers["idempotency-key"]
    assert cancel.headers["idempotency-key"] == f"{REF}-cancel"  # stable: a second send is the same cancel


async def test_cancel_by_reference_refused_by_adyen_is_failed() -> None:
    connector, _ = _connector(_json(422, _error(422, "167", "validation")))
    assert (await connector.cancel_by_reference(REF, "void_x")).outcome is O.FAILED


@pytest.mark.parametrize("kind", ["charge", "capture", "void", "refund"])
async def test_lookup_cannot_ask_adyen(kind: Any) -> None:
    connector, script = _connector()
    result = await connector.lookup("txn_9", kind, processor_id=PSP)
    assert (result.outcome, result.reference) == (O.UNKNOWN, "txn_9")
    assert "notification" in (result.message or "")
    assert script.sent == []


async def test_settlement_report_is_not_offered() -> None:
    connector, script = _connector()
    with pytest.raises(ConnectorError, match="report"):
        await connector.settlement_report(dt.date(2026, 12, 1))
    assert script.sent == []


@pytest.mark.parametrize("reference", ["", "x" * 65, "txn 1", "txn_\r\nX-Evil: 1", "txn_é"])
async def test_a_reference_unusable_as_idempotency_key_sends_nothing(reference: str) -> None:
    connector, script = _connector()
    result = await connector.charge(ChargeRequest(reference, "pi_1", "mer_1", 1, "EUR", CARD))
    assert result.outcome is O.FAILED
    assert script.sent == []


async def test_api_base_with_a_path_keeps_it_before_the_version() -> None:
    script = Script([_json(200, AUTHORISED)])
    live = "https://1797a841fbb37ca7-AdyenDemo-checkout-live.adyenpayments.com/checkout/"
    connector = AdyenConnector(live, MERCHANT, API_KEY, HMAC_KEY, transport=script)
    await connector.charge(_request())
    assert script.sent[0].target == "/checkout/v71/payments"


# --- the result-code table (200 answers to /payments) ----------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "decline_code"),
    [
        (AUTHORISED, O.APPROVED, None),
        (_refused("2", "Refused"), O.DECLINED, "generic_decline"),
        (_refused("12", "Not enough balance"), O.DECLINED, "insufficient_funds"),
        (_refused("6", "Expired Card"), O.DECLINED, "expired_card"),
        (_refused("24", "CVC Declined"), O.DECLINED, "incorrect_cvc"),
        (_refused("8", "Invalid Card Number"), O.DECLINED, "invalid_number"),
        (_refused("38", "Authentication required"), O.DECLINED, "authentication_required"),
        (_refused("20", "FRAUD"), O.DECLINED, "generic_decline"),
        (_refused("15", "Cancelled", "Cancelled"), O.DECLINED, "generic_decline"),
        (_refused("4", "Acquirer Error", "Error"), O.FAILED, None),
        ({"pspReference": PSP, "resultCode": "RedirectShopper", "action": {"type": "redirect"}},
         O.DECLINED, "authentication_required"),
        ({"pspReference": PSP, "resultCode": "IdentifyShopper", "action": {"type": "threeDS2"}},
         O.DECLINED, "authentication_required"),
        ({"pspReference": PSP, "resultCode": "ChallengeShopper", "action": {"type": "threeDS2"}},
         O.DECLINED, "authentication_required"),
        ({"pspReference": PSP, "resultCode": "Received"}, O.UNKNOWN, None),
        ({"pspReference": PSP, "resultCode": "Pending"}, O.UNKNOWN, None),
        ({"pspReference": PSP, "resultCode": "PresentToShopper"}, O.UNKNOWN, None),
        ({"pspReference": PSP, "resultCode": "PartiallyAuthorised"}, O.UNKNOWN, None),  # see below
        ({"pspReference": PSP, "resultCode": "Success"}, O.UNKNOWN, None),
        ({"pspReference": PSP, "resultCode": "AuthenticationFinished"}, O.FAILED, None),
        ({"pspReference": PSP, "resultCode": "AuthenticationNotRequired"}, O.FAILED, None),
        ({"pspReference": PSP, "resultCode": "authorised"}, O.UNKNOWN, None),  # case matters
        ({"pspReference": PSP}, O.UNKNOWN, None),  # no resultCode
        ({"pspReference": PSP, "resultCode": 1}, O.UNKNOWN, None),
        ({"resultCode": "Authorised"}, O.UNKNOWN, None),  # no pspReference: could never be captured
        ({**AUTHORISED, "merchantReference": "txn_other"}, O.UNKNOWN, None),  # another payment's answer
    ],
)
def test_payment_answers(answer: dict[str, Any], outcome: ChargeOutcome, decline_code: str | None) -> None:
    result = classify(Operation.CHARGE, REF, 200, orjson.dumps(answer))
    assert (result.outcome, result.decline_code) == (outcome, decline_code)


def test_an_approval_without_an_auth_code_has_none() -> None:
    answer = {k: v for k, v in AUTHORISED.items() if k != "additionalData"}
    result = classify(Operation.CHARGE, REF, 200, orjson.dumps(answer))
    assert (result.outcome, result.auth_code, result.processor_id) == (O.APPROVED, None, PSP)


@pytest.mark.parametrize("psp", ["P" * 129, "QFQTPCQ8\x00HXSKGK82"])
def test_an_approval_whose_psp_reference_cannot_be_kept_is_unknown(psp: str) -> None:
    # Once kept as given: longer than transactions.processor_id (or with a NUL PostgreSQL's
    # text refuses), settling the charge failed on PostgreSQL (a 500 for /process), and an
    # id cut or cleaned could never capture, refund or match a notification.
    result = classify(Operation.CHARGE, REF, 200, orjson.dumps({**AUTHORISED, "pspReference": psp}))
    assert (result.outcome, result.processor_id) == (O.UNKNOWN, None)
    assert result.message == "Authorised without a pspReference: outcome unknown"


@pytest.mark.parametrize(("result_code", "outcome", "says"), [
    # Never asked for (no allowPartialAuth): not the payment's outcome, and the operator is told why.
    ("PartiallyAuthorised", O.UNKNOWN, "authorised only part of the amount"),
    ("Success", O.UNKNOWN, "states no card authorisation"),
    # Authentication only ("proceed to authorise the payment"): nothing authorised, nothing charged.
    ("AuthenticationFinished", O.FAILED, "nothing authorised"),
    ("AuthenticationNotRequired", O.FAILED, "nothing authorised"),
])
async def test_result_codes_adyen_documents_beyond_the_usual(result_code: str, outcome: ChargeOutcome,
                                                             says: str) -> None:
    held = 1000 if result_code == "PartiallyAuthorised" else 1999  # of the 1999 asked for
    answer = {"pspReference": PSP, "resultCode": result_code, "merchantReference": REF,
              "amount": {"value": held, "currency": "EUR"}}
    connector, _ = _connector(_json(200, answer))
    result = await connector.charge(_request())
    assert (result.outcome, result.processor_id) == (outcome, PSP)
    assert says in (result.message or ""), result.message
    assert result_code in RESULT_CODES  # an explicit row of the table, not the fallback


def test_3ds_decline_says_it_is_not_supported() -> None:
    result = classify(Operation.CHARGE, REF, 200, orjson.dumps({"pspReference": PSP, "resultCode": "RedirectShopper"}))
    assert "3-D Secure" in (result.message or "") and "not supported" in (result.message or "")


def test_decline_codes_by_text_when_no_code() -> None:
    assert decline_code_for(None, "Not enough balance") == "insufficient_funds"
    assert decline_code_for(None, " cvc declined ") == "incorrect_cvc"
    assert decline_code_for(None, "Something new") == "generic_decline"
    assert decline_code_for(12, None) == "insufficient_funds"
    assert decline_code_for(None, None) == "generic_decline"


# --- errors and the lack of an answer --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (422, _error(422, "101", "validation", "Invalid card number"), O.FAILED),
        (422, _error(422, "14_030", "validation", "Return URL is missing."), O.FAILED),
        (400, _error(400, "702", "validation", "Structure error"), O.FAILED),
        (401, _error(401, "000", "security", "HTTP Status Response - Unauthorized"), O.FAILED),
        (403, _error(403, "010", "security", "Not allowed"), O.FAILED),
        (429, _error(429, "429", "security", "Too many requests"), O.RETRY),
        (422, _error(422, "704", "validation", "request already processed or in progress"), O.UNKNOWN),
        (409, _error(409, "704", "validation", "request already processed or in progress"), O.UNKNOWN),
        (500, _error(500, "905", "internal", "Payment details are not supported"), O.UNKNOWN),
        (503, _error(503, "000", "internal", "Service unavailable"), O.UNKNOWN),
        (500, {"status": 500}, O.UNKNOWN),  # no errorCode
        (422, {"message": "no code"}, O.UNKNOWN),  # not an Adyen error body
        (404, _error(404, "000", "security"), O.UNKNOWN),
        (200, _error(200, "000", "internal"), O.UNKNOWN),  # an error body under 200: no resultCode
        (201, {"resultCode": "Authorised", "pspReference": PSP}, O.UNKNOWN),  # a payment is answered 200
    ],
)
def test_error_answers_of_a_charge(status: int, body: dict[str, Any], outcome: ChargeOutcome) -> None:
    assert classify(Operation.CHARGE, REF, status, orjson.dumps(body)).outcome is outcome


@pytest.mark.parametrize("operation", [Operation.CAPTURE, Operation.VOID, Operation.REFUND,
                                       Operation.CANCEL_BY_REFERENCE])
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (201, {"status": "received", "reference": "op_1"}, O.UNKNOWN),
        (201, {"status": "received", "reference": "op_2"}, O.UNKNOWN),
        (201, {"status": "captured"}, O.UNKNOWN),
        (201, {}, O.UNKNOWN),
        (422, _error(422, "167", "validation", "Original pspReference required"), O.FAILED),
        (422, _error(422, "704", "validation"), O.UNKNOWN),
        (401, _error(401, "000", "security"), O.FAILED),
        (429, _error(429, "429", "security"), O.RETRY),
        (500, _error(500, "000", "internal"), O.UNKNOWN),
    ],
)
def test_answers_of_modifications(operation: Operation, status: int, body: dict[str, Any],
                                  outcome: ChargeOutcome) -> None:
    if operation is Operation.CANCEL_BY_REFERENCE and body == {"status": "received", "reference": "op_1"}:
        outcome = O.APPROVED  # Adyen has the cancel: the reconciler does not send it again
    assert classify(operation, "op_1", status, orjson.dumps(body)).outcome is outcome


@pytest.mark.parametrize("operation", list(Operation))
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, b"<html>gateway error</html>", O.UNKNOWN),
        (502, b"Bad Gateway", O.UNKNOWN),
        (200, b"", O.UNKNOWN),
        (200, b"[1, 2]", O.UNKNOWN),
        (None, None, O.UNKNOWN),
    ],
)
def test_unreadable_answers_are_unknown(operation: Operation, status: int | None, body: bytes | None,
                                        outcome: ChargeOutcome) -> None:
    assert classify(operation, REF, status, body).outcome is outcome


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ConnectFailed("connect failed: ConnectionRefusedError"), O.FAILED),  # nothing sent
        (HttpTimeout("read timeout"), O.UNKNOWN),
        (TimeoutError(), O.UNKNOWN),
        (ConnectionLost("closed"), O.UNKNOWN),
        (ReusedConnectionClosed("closed"), O.UNKNOWN),
        (MalformedResponse("bad"), O.UNKNOWN),
        (OSError("reset"), O.UNKNOWN),
    ],
)
async def test_transport_failures(error: BaseException, outcome: ChargeOutcome) -> None:
    connector, _ = _connector(error)
    result = await connector.charge(_request())
    assert result.outcome is outcome
    assert type(error).__name__ in (result.message or "")
    connector, _ = _connector(error)
    refund = await connector.refund(RefundRequest("re_1", REF, 1, "EUR", charge_processor_id=PSP))
    assert refund.outcome is outcome


# --- the real client on loopback ------------------------------------------------------------


async def test_a_charge_over_a_real_connection() -> None:
    def answer(seen: Seen) -> Reply:
        return Reply(200, orjson.dumps(AUTHORISED))

    async with StubServer(answer) as stub:
        connector = AdyenConnector(stub.url, MERCHANT, API_KEY, HMAC_KEY, read_timeout=5)
        try:
            result = await connector.charge(_request())
        finally:
            await connector.aclose()
    assert (result.outcome, result.processor_id) == (O.APPROVED, PSP)
    [seen] = stub.seen
    assert seen.target == "/v71/payments"
    assert seen.headers["x-api-key"] == API_KEY and seen.headers["idempotency-key"] == REF
    assert orjson.loads(seen.body)["paymentMethod"]["number"] == CARD.number


async def test_an_answer_lost_after_the_request_was_sent_is_unknown() -> None:
    async with StubServer(lambda seen: CLOSE) as stub:
        connector = AdyenConnector(stub.url, MERCHANT, API_KEY, HMAC_KEY, read_timeout=5)
        try:
            result = await connector.charge(_request())
        finally:
            await connector.aclose()
    assert len(stub.seen) == 1  # Adyen got the payment: it may well be authorised
    assert result.outcome is O.UNKNOWN


async def test_a_refused_connection_is_failed_with_nothing_sent() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    connector = AdyenConnector(f"http://127.0.0.1:{port}", MERCHANT, API_KEY, HMAC_KEY, connect_timeout=2)
    try:
        assert (await connector.charge(_request())).outcome is O.FAILED
        assert (await connector.lookup(REF)).outcome is O.UNKNOWN
    finally:
        await connector.aclose()


# --- the account kind and secrets -----------------------------------------------------------


@pytest.mark.parametrize("api_base", ["ftp://checkout-test.adyen.com", "checkout-test.adyen.com", "https://"])
def test_api_base_must_be_an_http_url(api_base: str) -> None:
    with pytest.raises(ValueError, match="apiBase"):
        AdyenConnector(api_base, MERCHANT, API_KEY, HMAC_KEY, transport=Script([]))


def test_the_kind_builds_a_connector() -> None:
    assert connector_kind("adyen") is KIND
    settings = KIND.complete_settings({"apiBase": "https://checkout-test.adyen.com", "merchantAccount": MERCHANT})
    KIND.check_credentials({"apiKey": API_KEY, "hmacKey": HMAC_KEY})
    script = Script([])
    connector = KIND.build(settings, {"apiKey": API_KEY, "hmacKey": HMAC_KEY}, connect_timeout=1.0,
                           read_timeout=2.0, max_connections=4, transport=script)
    assert isinstance(connector, AdyenConnector) and isinstance(connector, Connector)
    assert connector.name == "adyen"
    with pytest.raises(ValueError, match="merchantAccount"):
        KIND.complete_settings({"apiBase": "https://checkout-test.adyen.com"})
    with pytest.raises(ValueError, match="hmacKey"):
        KIND.check_credentials({"apiKey": API_KEY})


@pytest.mark.parametrize(
    ("api_key", "hmac_key", "match"),
    [
        ("key with space", HMAC_KEY, "apiKey"),
        ("key\r\nX-Evil: 1", HMAC_KEY, "apiKey"),
        (API_KEY, "not-hex-at-all", "hmacKey"),
        (API_KEY, "abc", "hmacKey"),  # odd length
    ],
)
def test_bad_credentials_are_named_never_shown(api_key: str, hmac_key: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as raised:
        AdyenConnector("https://checkout-test.adyen.com", MERCHANT, api_key, hmac_key, transport=Script([]))
    assert api_key not in str(raised.value) and hmac_key not in str(raised.value)
    assert raised.value.__cause__ is None  # raised "from None": the chained text is not shown either


async def test_no_secret_or_card_data_in_messages_or_reprs() -> None:
    secrets = (API_KEY, HMAC_KEY, HMAC_KEY.lower(), CARD.number, "737")
    echoing = {"status": 422, "errorCode": "101", "errorType": "validation",
               "message": f"Invalid card number {CARD.number} cvc 737 key {API_KEY}"}
    refused = {**_refused("8", f"Invalid Card Number {CARD.number}")}
    answers: list[Response | BaseException] = [
        _json(422, echoing), _json(200, refused), _json(200, {"pspReference": PSP, "resultCode": "Error",
                                                            "refusalReason": f"bad {CARD.number}"}),
        ConnectionLost(f"lost {CARD.number} {API_KEY}"), HttpTimeout(API_KEY), _json(500, echoing),
    ]
    connector, _ = _connector(*answers)
    results = [await connector.charge(_request()) for _ in answers]
    with pytest.raises(ConnectorError) as report_error:
        await connector.settlement_report(dt.date(2026, 12, 1))
    texts = [repr(connector), str(connector), str(report_error.value), repr(CARD), repr(_request())]
    texts += [repr(r) for r in results] + [str(r.message) for r in results]
    for text in texts:
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert [r.outcome for r in results] == [O.FAILED, O.DECLINED, O.FAILED, O.UNKNOWN, O.UNKNOWN, O.UNKNOWN]


async def test_a_card_number_quoted_with_separators_is_left_out_too() -> None:
    spaced = " ".join(CARD.number[i:i + 4] for i in range(0, 16, 4))
    connector, _ = _connector(_json(200, _refused("8", f"Invalid Card Number {spaced}")))
    result = await connector.charge(_request())
    assert result.outcome is O.DECLINED and result.decline_code == "invalid_number"
    assert spaced not in repr(result) and "1111 1111" not in (result.message or "")
