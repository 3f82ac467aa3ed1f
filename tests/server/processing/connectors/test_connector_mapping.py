"""The answer → outcome table of the simulator connector, branch by branch: ``classify``
alone, then the connector against a scripted server on 127.0.0.1 (transport failures are
in test_connector_transport.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from paygate_server.http1client import (
    ConnectFailed,
    ConnectionLost,
    HttpError,
    HttpTimeout,
    MalformedResponse,
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
    SimulatorConnector,
    VoidRequest,
    connector_for_url,
)
from paygate_server.processing.connectors._transport import auth_code, processor_text
from paygate_server.processing.connectors.simulator import Operation, classify
from tests.support.http_stub import Reply, Seen, StubServer

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcome tables readable
REF = "txn_abc"
CARD = CardDetails("4242424242424242", 12, 2030, "123")
REQUEST = ChargeRequest(REF, "pi_1", "mer_1", 1999, "USD", CARD)


def _json(status: int, body: Any) -> tuple[int, bytes]:
    return status, orjson.dumps(body)


APPROVED = {"reference": REF, "status": "approved", "authCode": "A1B2C3", "declineCode": None}
DECLINED = {
    "reference": REF,
    "status": "declined",
    "authCode": None,
    "declineCode": "insufficient_funds",
    "message": "The card has insufficient funds.",
}
PROCESSING_ERROR = {
    "status": "error",
    "code": "processing_error",
    "retryable": False,
    "message": "boom",
}
UNAVAILABLE = {"status": "error", "code": "temporarily_unavailable", "retryable": True}
NOT_FOUND = {"status": "error", "code": "charge_not_found", "retryable": False}

# (operation, HTTP status, body) → outcome
ANSWERS: list[tuple[str, Operation, int, bytes, ChargeOutcome]] = [
    ("approved", Operation.CHARGE, *_json(200, APPROVED), O.APPROVED),
    ("declined", Operation.CHARGE, *_json(200, DECLINED), O.DECLINED),
    (
        "approved without authCode",
        Operation.CHARGE,
        *_json(200, {**APPROVED, "authCode": None}),
        O.UNKNOWN,
    ),
    (
        "declined without declineCode",
        Operation.CHARGE,
        *_json(200, {**DECLINED, "declineCode": ""}),
        O.UNKNOWN,
    ),
    (
        "other status word",
        Operation.CHARGE,
        *_json(200, {**APPROVED, "status": "pending"}),
        O.UNKNOWN,
    ),
    (
        "answer for another reference",
        Operation.CHARGE,
        *_json(200, {**APPROVED, "reference": "txn_other"}),
        O.UNKNOWN,
    ),
    ("200 not JSON", Operation.CHARGE, 200, b"<html>ok</html>", O.UNKNOWN),
    ("200 empty", Operation.CHARGE, 200, b"", O.UNKNOWN),
    ("200 JSON list", Operation.CHARGE, *_json(200, [APPROVED]), O.UNKNOWN),
    ("500 retryable false", Operation.CHARGE, *_json(500, PROCESSING_ERROR), O.FAILED),
    ("502 retryable false", Operation.CHARGE, *_json(502, PROCESSING_ERROR), O.FAILED),
    ("503 retryable true", Operation.CHARGE, *_json(503, UNAVAILABLE), O.RETRY),
    ("500 retryable true", Operation.CHARGE, *_json(500, UNAVAILABLE), O.RETRY),
    (
        "500 without retryable",
        Operation.CHARGE,
        *_json(500, {"status": "error", "code": "internal_error"}),
        O.UNKNOWN,
    ),
    (
        "500 retryable as string",
        Operation.CHARGE,
        *_json(500, {**PROCESSING_ERROR, "retryable": "false"}),
        O.UNKNOWN,
    ),
    ("503 no body", Operation.CHARGE, 503, b"", O.UNKNOWN),
    ("502 from a proxy", Operation.CHARGE, 502, b"<html>Bad Gateway</html>", O.UNKNOWN),
    ("500 JSON without status", Operation.CHARGE, *_json(500, {"retryable": False}), O.UNKNOWN),
    (
        "400 rejected",
        Operation.CHARGE,
        *_json(400, {"status": "error", "code": "parameter_invalid", "retryable": False}),
        O.FAILED,
    ),
    (
        "409 reference conflict",
        Operation.CHARGE,
        *_json(409, {"status": "error", "code": "reference_conflict"}),
        O.UNKNOWN,
    ),
    (
        "409 even if it says retryable false",
        Operation.CHARGE,
        *_json(409, {"status": "error", "code": "reference_conflict", "retryable": False}),
        O.UNKNOWN,
    ),
    ("404 on charge", Operation.CHARGE, *_json(404, NOT_FOUND), O.UNKNOWN),
    ("302 redirect", Operation.CHARGE, 302, b"", O.UNKNOWN),
    ("201 unexpected success code", Operation.CHARGE, *_json(201, APPROVED), O.UNKNOWN),
    ("429", Operation.CHARGE, *_json(429, {"status": "error", "retryable": True}), O.UNKNOWN),
    ("lookup approved", Operation.LOOKUP, *_json(200, APPROVED), O.APPROVED),
    ("lookup declined", Operation.LOOKUP, *_json(200, DECLINED), O.DECLINED),
    ("lookup 404 charge_not_found", Operation.LOOKUP, *_json(404, NOT_FOUND), O.NOT_FOUND),
    ("lookup 404 plain text", Operation.LOOKUP, 404, b"Not Found", O.UNKNOWN),
    (
        "lookup 404 other code",
        Operation.LOOKUP,
        *_json(404, {"status": "error", "code": "not_found"}),
        O.UNKNOWN,
    ),
    ("lookup 500 processing_error", Operation.LOOKUP, *_json(500, PROCESSING_ERROR), O.UNKNOWN),
    ("lookup 503 retryable", Operation.LOOKUP, *_json(503, UNAVAILABLE), O.UNKNOWN),
    (
        "lookup 400",
        Operation.LOOKUP,
        *_json(400, {"status": "error", "code": "parameter_invalid", "retryable": False}),
        O.UNKNOWN,
    ),
    (
        "refund succeeded",
        Operation.REFUND,
        *_json(200, {"reference": REF, "status": "succeeded", "amount": 5}),
        O.APPROVED,
    ),
    (
        "refund other status",
        Operation.REFUND,
        *_json(200, {"reference": REF, "status": "pending"}),
        O.UNKNOWN,
    ),
    (
        "refund for another reference",
        Operation.REFUND,
        *_json(200, {"reference": "re_other", "status": "succeeded"}),
        O.UNKNOWN,
    ),
    (
        "refund exceeds",
        Operation.REFUND,
        *_json(422, {"status": "error", "code": "amount_exceeds_remaining", "retryable": False}),
        O.DECLINED,
    ),
    (
        "refund of a declined charge",
        Operation.REFUND,
        *_json(422, {"status": "error", "code": "charge_not_refundable", "retryable": False}),
        O.DECLINED,
    ),
    ("refund of an unknown charge", Operation.REFUND, *_json(404, NOT_FOUND), O.DECLINED),
    ("refund 404 without code", Operation.REFUND, 404, b"nope", O.UNKNOWN),
    (
        "refund 400",
        Operation.REFUND,
        *_json(400, {"status": "error", "code": "parameter_invalid", "retryable": False}),
        O.FAILED,
    ),
    (
        "refund 409 conflict",
        Operation.REFUND,
        *_json(409, {"status": "error", "code": "reference_conflict"}),
        O.UNKNOWN,
    ),
    ("refund 503 retryable", Operation.REFUND, *_json(503, UNAVAILABLE), O.RETRY),
    ("refund 500 unparseable", Operation.REFUND, 500, b"oops", O.UNKNOWN),
]


@pytest.mark.parametrize(
    ("case", "operation", "status", "body", "outcome"), ANSWERS, ids=[a[0] for a in ANSWERS]
)
def test_classify(
    case: str, operation: Operation, status: int, body: bytes, outcome: ChargeOutcome
) -> None:
    assert classify(operation, REF, status, body).outcome is outcome


def test_classify_carries_codes_and_messages() -> None:
    approved = classify(Operation.CHARGE, REF, *_json(200, APPROVED))
    assert approved.auth_code == "A1B2C3" and approved.decline_code is None
    declined = classify(Operation.CHARGE, REF, *_json(200, DECLINED))
    assert declined.decline_code == "insufficient_funds"
    assert declined.message == "The card has insufficient funds."
    failed = classify(Operation.CHARGE, REF, *_json(500, PROCESSING_ERROR))
    assert failed.decline_code is None and "processing_error" in (failed.message or "")


@pytest.mark.parametrize("quoted", ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242"])
def test_a_processor_text_quoting_a_card_number_is_left_out(quoted: str) -> None:
    retry = classify(Operation.CHARGE, REF, *_json(503, {**UNAVAILABLE, "message": f"card {quoted} busy"}))
    refused = classify(Operation.CAPTURE, REF, *_json(200, {"reference": REF, "status": "refused",
                                                            "declineCode": "x", "message": f"no {quoted}"}))
    assert (retry.outcome, refused.outcome) == (O.RETRY, O.DECLINED)
    for answer in (retry, refused):
        assert quoted not in (answer.message or "") and "4242" not in (answer.message or "")


def test_a_processor_text_loses_its_nul_characters() -> None:
    # PostgreSQL's text cannot hold NUL: a refusal's reason with one failed the settle (a 500).
    refused = classify(Operation.CAPTURE, REF, *_json(200, {"reference": REF, "status": "refused",
                                                            "declineCode": "x", "message": "no\x00 way"}))
    assert refused.message == "no way"
    assert processor_text("\x00") is None and auth_code("A" * 33) is None and auth_code("A1B2C3") == "A1B2C3"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (HttpTimeout("timeout"), "timeout"),
        (TimeoutError("asyncio deadline"), "timeout"),
        (ConnectionLost("connection lost: ConnectionResetError"), "transport error"),
        (ReusedConnectionClosed("connection lost"), "transport error"),
        (MalformedResponse("malformed response: ValueError"), "transport error"),
        (HttpError("connection pool closed"), "transport error"),
        (ConnectionResetError("reset by peer"), "transport error"),
        (OSError("anything else"), "transport error"),
        (ValueError("card 4242424242424242"), "transport error"),
    ],
)
def test_classify_errors_are_unknown_and_say_which_kind(error: Exception, kind: str) -> None:
    for operation in Operation:
        answer = classify(operation, REF, None, None, error)
        assert answer.outcome is O.UNKNOWN
        # The class name only, never the exception's text.
        assert answer.message == f"{kind} ({type(error).__name__}): outcome unknown"


def test_a_connection_that_never_opened_sent_nothing_so_it_failed_and_a_lookup_is_unknown() -> None:
    """SPEC §7: "a connection refused before the request was sent" says nothing was done —
    the one transport error that is definitive (and lets an account fail over)."""
    error = ConnectFailed("connect failed: ConnectionRefusedError")
    for operation in Operation:
        answer = classify(operation, REF, None, None, error)
        if operation.value.startswith("lookup"):
            assert answer.outcome is O.UNKNOWN  # a look-up that did not happen says nothing
        else:
            assert answer.outcome is O.FAILED
            assert answer.message == "could not connect (ConnectFailed): nothing sent"


@contextlib.asynccontextmanager
async def _connector(handler: Callable[[Seen], Reply]) -> AsyncIterator[SimulatorConnector]:
    async with StubServer(handler) as stub, SimulatorConnector(stub.url) as connector:
        yield connector


@pytest.mark.parametrize(
    ("case", "operation", "status", "body", "outcome"),
    [a for a in ANSWERS if a[1] is not Operation.REFUND],
    ids=[a[0] for a in ANSWERS if a[1] is not Operation.REFUND],
)
async def test_connector_uses_the_table(
    case: str, operation: Operation, status: int, body: bytes, outcome: ChargeOutcome
) -> None:
    async with _connector(lambda seen: Reply(status, body)) as connector:
        if operation is Operation.CHARGE:
            result = await connector.charge(REQUEST)
        else:
            result = await connector.lookup(REF)
    assert result.outcome is outcome and result.reference == REF


async def test_charge_request_on_the_wire() -> None:
    seen: list[Seen] = []

    def handler(request: Seen) -> Reply:
        seen.append(request)
        return Reply(200, orjson.dumps(APPROVED))

    async with _connector(handler) as connector:
        result = await connector.charge(REQUEST)
        no_cvc = ChargeRequest(
            REF, "pi_1", "mer_1", 1999, "USD", CardDetails("4242424242424242", 1, 2031, None)
        )
        await connector.charge(no_cvc)
    assert result.outcome is O.APPROVED and result.auth_code == "A1B2C3"
    first, second = seen
    assert first.method == "POST" and first.target == "/v1/charges"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"] == "paygate-connector"
    assert first.headers["content-length"] == str(len(first.body))
    assert (first.connection, second.connection) == (0, 0)  # one keep-alive connection
    assert orjson.loads(first.body) == {
        "reference": REF,
        "paymentIntentId": "pi_1",
        "merchantId": "mer_1",
        "amount": 1999,
        "currency": "USD",
        "card": {"number": "4242424242424242", "expMonth": 12, "expYear": 2030, "cvc": "123"},
    }
    assert "cvc" not in orjson.loads(second.body)["card"]


async def test_lookup_and_refund_on_the_wire() -> None:
    seen: list[Seen] = []

    def handler(request: Seen) -> Reply:
        seen.append(request)
        if request.target.startswith("/v1/charges/"):
            return Reply(404, orjson.dumps(NOT_FOUND))
        return Reply(200, orjson.dumps({"reference": "re_9", "status": "succeeded"}))

    async with _connector(handler) as connector:
        assert (await connector.lookup("txn_a:b")).outcome is O.NOT_FOUND
        refund = await connector.refund(RefundRequest("re_9", "txn_a", 250, "USD"))
    assert refund.outcome is O.APPROVED and refund.reference == "re_9"
    assert seen[0].method == "GET" and seen[0].target == "/v1/charges/txn_a%3Ab"
    assert "content-length" not in seen[0].headers  # a GET without a body
    assert seen[1].method == "POST" and seen[1].target == "/v1/refunds"
    assert orjson.loads(seen[1].body) == {
        "reference": "re_9",
        "chargeReference": "txn_a",
        "amount": 250,
    }


@pytest.mark.parametrize(
    ("operation", "body", "outcome", "decline_code"),
    [
        (Operation.CAPTURE, {"reference": REF, "status": "captured", "amount": 600}, O.APPROVED, None),
        (Operation.CAPTURE, {"reference": REF, "status": "refused", "declineCode": "authorization_expired"},
         O.DECLINED, "authorization_expired"),
        (Operation.CAPTURE, {"reference": REF, "status": "refused"}, O.UNKNOWN, None),  # refused, but why?
        (Operation.CAPTURE, {"reference": REF, "status": "approved", "authCode": "A"}, O.UNKNOWN, None),
        (Operation.CAPTURE, {"reference": "other", "status": "captured"}, O.UNKNOWN, None),
        (Operation.VOID, {"reference": REF, "status": "voided"}, O.APPROVED, None),
        (Operation.VOID, {"reference": REF, "status": "refused", "declineCode": "already_captured"},
         O.DECLINED, "already_captured"),
        (Operation.VOID, {"reference": REF, "status": "captured"}, O.UNKNOWN, None),
        (Operation.LOOKUP_CAPTURE, {"reference": REF, "status": "captured"}, O.APPROVED, None),
        (Operation.LOOKUP_VOID, {"reference": REF, "status": "voided"}, O.APPROVED, None),
    ],
)
def test_capture_and_void_statuses(operation: Operation, body: dict[str, Any], outcome: ChargeOutcome,
                                   decline_code: str | None) -> None:
    answer = classify(operation, REF, 200, orjson.dumps(body))
    assert (answer.outcome, answer.decline_code) == (outcome, decline_code)


async def test_authorize_capture_void_and_their_lookups_on_the_wire() -> None:
    seen: list[Seen] = []

    def handler(request: Seen) -> Reply:
        seen.append(request)
        if request.target == "/v1/charges":
            return Reply(200, orjson.dumps(APPROVED))
        if request.target == "/v1/captures":
            return Reply(200, orjson.dumps({"reference": "cap_1", "status": "captured", "amount": 600}))
        if request.target == "/v1/voids":
            return Reply(200, orjson.dumps({"reference": "void_1", "status": "voided"}))
        code = {"captures": "capture_not_found", "voids": "void_not_found"}[request.target.split("/")[2]]
        return Reply(404, orjson.dumps({"status": "error", "code": code, "retryable": False}))

    authorize = ChargeRequest(REF, "pi_1", "mer_1", 1999, "USD", CARD, capture=False)
    async with _connector(handler) as connector:
        assert (await connector.charge(authorize)).outcome is O.APPROVED
        captured = await connector.capture(CaptureRequest("cap_1", REF, 600, "USD"))
        voided = await connector.void(VoidRequest("void_1", REF))
        assert (await connector.lookup("cap_1", "capture")).outcome is O.NOT_FOUND
        assert (await connector.lookup("void_1", "void")).outcome is O.NOT_FOUND
    assert (captured.outcome, captured.reference, voided.outcome) == (O.APPROVED, "cap_1", O.APPROVED)
    assert orjson.loads(seen[0].body)["capture"] is False
    assert orjson.loads(seen[1].body) == {"reference": "cap_1", "chargeReference": REF, "amount": 600}
    assert orjson.loads(seen[2].body) == {"reference": "void_1", "chargeReference": REF}
    assert [(s.method, s.target) for s in seen[3:]] == [("GET", "/v1/captures/cap_1"), ("GET", "/v1/voids/void_1")]


async def test_settlement_report_parsing() -> None:
    report = {
        "date": "2025-01-01",
        "charges": [
            {
                "reference": "txn_1",
                "paymentIntentId": "pi_1",
                "merchantId": "mer_1",
                "amount": 1000,
                "currency": "USD",
                "authCode": "X",
                "createdAt": "…",
            }
        ],
        "captures": [
            {"reference": "cap_1", "chargeReference": "txn_0", "paymentIntentId": "pi_0", "merchantId": "mer_1",
             "amount": 600, "currency": "USD", "authCode": "Q", "createdAt": "…"}
        ],
        "refunds": [
            {
                "reference": "re_1",
                "chargeReference": "txn_1",
                "paymentIntentId": "pi_1",
                "merchantId": "mer_1",
                "amount": 300,
                "currency": "USD",
                "createdAt": "…",
            }
        ],
        "totals": {},
    }

    seen: list[Seen] = []

    def handler(request: Seen) -> Reply:
        seen.append(request)
        return Reply(200, orjson.dumps(report))

    async with _connector(handler) as connector:
        records = await connector.settlement_report(dt.date(2025, 1, 1))
    assert [(r.method, r.target) for r in seen] == [("GET", "/v1/settlements?date=2025-01-01")]
    assert [
        (r.kind, r.reference, r.payment_intent_id, r.charge_reference, r.amount, r.currency)
        for r in records
    ] == [
        ("charge", "txn_1", "pi_1", None, 1000, "USD"),
        ("capture", "cap_1", "pi_0", "txn_0", 600, "USD"),
        ("refund", "re_1", "pi_1", "txn_1", 300, "USD"),
    ]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b"{}"),
        (200, b"not json"),
        (200, b'{"charges": [{"reference": "t"}], "refunds": []}'),
        (
            200,
            b'{"charges": [{"reference": "t", "amount": "1", "currency": "USD"}], "refunds": []}',
        ),
        (200, b"[]"),
    ],
)
async def test_settlement_report_errors(status: int, body: bytes) -> None:
    async with _connector(lambda seen: Reply(status, body)) as connector:
        with pytest.raises(ConnectorError):
            await connector.settlement_report(dt.date(2025, 1, 1))


def test_card_details_repr_hides_number_and_cvc() -> None:
    for text in (repr(CARD), str(CARD), repr(REQUEST), f"{REQUEST}"):
        assert "4242424242424242" not in text
        assert "123" not in text.replace("1999", "")
        assert "4242" in text  # last4 is fine and helps debugging


async def test_base_url_path_prefix_and_host_header() -> None:
    seen: list[Seen] = []

    def handler(request: Seen) -> Reply:
        seen.append(request)
        return Reply(200, orjson.dumps(APPROVED))

    async with StubServer(handler) as stub:
        async with SimulatorConnector(stub.url + "/processor/") as connector:
            assert (await connector.charge(REQUEST)).outcome is O.APPROVED
            assert (await connector.lookup(REF)).outcome is O.APPROVED
        assert seen[0].headers["host"] == f"127.0.0.1:{stub.port}"
    assert [r.target for r in seen] == ["/processor/v1/charges", "/processor/v1/charges/txn_abc"]


def test_connector_for_url() -> None:
    assert isinstance(connector_for_url("http://127.0.0.1:8081"), SimulatorConnector)
    assert isinstance(connector_for_url("simulator+https://sim.example"), SimulatorConnector)
    assert connector_for_url("simulator+http://sim.example:9/").base_url == "http://sim.example:9"
    assert isinstance(connector_for_url("http://x"), Connector)
    for url in ("acme://processor", "ftp://x", "../../etc://x", "base://x"):
        with pytest.raises(ValueError):
            connector_for_url(url)
