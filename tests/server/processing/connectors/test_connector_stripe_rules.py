"""The Stripe connector's rules, case by case (connectors/stripe_rules.py): the error
classifier, the payment intent and refund status tables, the decline codes, and that no
message carries a card number or a key."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from paygate_server.http1client import (
    ConnectFailed,
    ConnectionLost,
    HttpTimeout,
    MalformedResponse,
    ReusedConnectionClosed,
)
from paygate_server.processing.connectors import ChargeOutcome
from paygate_server.processing.connectors.stripe_rules import (
    Answer,
    Step,
    capture_answer,
    charge_answer,
    classify_error,
    decline_code,
    refund_answer,
    refusal_by_payment_intent,
    void_answer,
)

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the tables readable
OPERATIONS = [Step.PAYMENT_METHOD, Step.CREATE, Step.TAG, Step.CONFIRM, Step.CAPTURE, Step.VOID, Step.REFUND]
LOOKUPS = [Step.RETRIEVE, Step.LIST_REFUNDS]


def _error(status_type: str = "invalid_request_error", **fields: Any) -> bytes:
    return orjson.dumps({"error": {"type": status_type, **fields}})


# -- the error classifier ---------------------------------------------------------------------

@pytest.mark.parametrize("step", OPERATIONS)
def test_connect_failed_is_failed_for_operations(step: Step) -> None:
    answer = classify_error(step, None, None, ConnectFailed("refused"))
    assert answer.outcome is O.FAILED
    assert answer.message is not None and "ConnectFailed" in answer.message and "refused" not in answer.message


@pytest.mark.parametrize("step", LOOKUPS)
def test_connect_failed_is_unknown_for_lookups(step: Step) -> None:
    assert classify_error(step, None, None, ConnectFailed("refused")).outcome is O.UNKNOWN


@pytest.mark.parametrize("error", [HttpTimeout("t"), TimeoutError(), ConnectionLost("lost"),
                                   ReusedConnectionClosed("idle"), MalformedResponse("bad"), OSError("x")])
@pytest.mark.parametrize("step", OPERATIONS + LOOKUPS)
def test_transport_trouble_is_unknown(step: Step, error: BaseException) -> None:
    answer = classify_error(step, None, None, error)
    assert answer.outcome is O.UNKNOWN
    assert answer.message is not None and type(error).__name__ in answer.message


def test_a_timeout_says_timeout() -> None:
    assert (classify_error(Step.CONFIRM, None, None, HttpTimeout("t")).message or "").startswith("timeout")


def test_402_card_error_is_declined_with_the_decline_code() -> None:
    body = _error("card_error", code="card_declined", decline_code="insufficient_funds",
                  message="Your card has insufficient funds.")
    answer = classify_error(Step.CONFIRM, 402, body)
    assert answer == Answer(O.DECLINED, decline_code="insufficient_funds",
                            message="insufficient_funds: Your card has insufficient funds.")


def test_402_from_localstripe_is_declined_whatever_its_type() -> None:
    # localstripe labels every error invalid_request_error, its 402s too.
    answer = classify_error(Step.CONFIRM, 402, _error(code="card_declined", message="Your card was declined."))
    assert (answer.outcome, answer.decline_code) == (O.DECLINED, "generic_decline")


def test_402_on_the_payment_method_is_declined() -> None:
    answer = classify_error(Step.PAYMENT_METHOD, 402, _error("card_error", code="incorrect_number"))
    assert (answer.outcome, answer.decline_code) == (O.DECLINED, "invalid_number")


@pytest.mark.parametrize("step", [Step.PAYMENT_METHOD, Step.CREATE, Step.TAG, Step.CONFIRM, Step.CAPTURE, Step.VOID])
def test_400_invalid_request_is_failed(step: Step) -> None:
    answer = classify_error(step, 400, _error(code="parameter_invalid_integer", message="Invalid integer"))
    assert answer == Answer(O.FAILED, message="parameter_invalid_integer: Invalid integer")


def test_400_on_a_refund_is_a_refusal() -> None:
    answer = classify_error(Step.REFUND, 400, _error(code="charge_already_refunded", message="already refunded"))
    assert answer.outcome is O.DECLINED


def test_404_on_an_operation_is_failed_and_on_a_refund_declined() -> None:
    body = _error(code="resource_missing", message="No such payment_intent")
    assert classify_error(Step.CAPTURE, 404, body).outcome is O.FAILED
    assert classify_error(Step.REFUND, 404, body).outcome is O.DECLINED


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("step", OPERATIONS)
def test_not_authorized_is_failed(step: Step, status: int) -> None:
    body = _error("invalid_request_error", message="Invalid API Key provided: sk_test_****abcd")
    answer = classify_error(step, status, body)
    assert answer.outcome is O.FAILED
    assert answer.message == f"not authorized (HTTP {status}): nothing done"


@pytest.mark.parametrize("code", ["rate_limit", "lock_timeout"])
def test_429_is_retry(code: str) -> None:
    assert classify_error(Step.CONFIRM, 429, _error("rate_limit_error" if code == "rate_limit" else
                                                    "invalid_request_error", code=code)).outcome is O.RETRY


@pytest.mark.parametrize("status", [400, 409])
def test_idempotency_error_is_unknown(status: int) -> None:
    answer = classify_error(Step.CONFIRM, status, _error("idempotency_error", message="Keys for idempotent requests"))
    assert answer.outcome is O.UNKNOWN


def test_409_conflict_is_unknown() -> None:
    assert classify_error(Step.CONFIRM, 409, _error(code="idempotency_key_in_use")).outcome is O.UNKNOWN


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unknown_even_with_an_error_body(status: int) -> None:
    assert classify_error(Step.CONFIRM, status, _error("api_error", message="oops")).outcome is O.UNKNOWN


@pytest.mark.parametrize("body", [b"", b"<html>bad gateway</html>", b"[]", b'{"error": "text"}', b'{"ok": 1}'])
def test_a_body_that_is_not_an_error_object_is_unknown(body: bytes) -> None:
    assert classify_error(Step.CAPTURE, 400, body).outcome is O.UNKNOWN
    assert classify_error(Step.CONFIRM, 402, body).outcome is O.UNKNOWN


def test_unusual_statuses_are_unknown() -> None:
    assert classify_error(Step.CONFIRM, 418, _error(code="teapot")).outcome is O.UNKNOWN
    assert classify_error(Step.CONFIRM, 302, _error(code="moved")).outcome is O.UNKNOWN


def test_a_lookups_error_is_unknown_404_included() -> None:
    # Every look-up names an object by the id Stripe gave it: a 404 says nothing of a confirm.
    for step in (Step.RETRIEVE, Step.LIST_REFUNDS):
        for status in (400, 401, 402, 404, 429, 500):
            assert classify_error(step, status, _error(code="resource_missing")).outcome is O.UNKNOWN


def test_messages_never_carry_a_card_number_or_a_key() -> None:
    number = _error("card_error", code="card_declined", message="Card 4242424242424242 was declined")
    assert classify_error(Step.CONFIRM, 402, number).message == "card_declined"
    key = _error(code="x", message="Invalid API Key provided: sk_live_51Habcdefghijkl")
    assert classify_error(Step.CREATE, 400, key).message == "x"
    spaced = _error(code="4242 4242 4242 4242")
    assert classify_error(Step.CREATE, 400, spaced).message is None


def test_messages_are_capped() -> None:
    answer = classify_error(Step.CREATE, 400, _error(code="c", message="m" * 1000))
    assert answer.message is not None and len(answer.message) <= 200


# -- decline codes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("error", "code"), [
    ({"code": "card_declined", "decline_code": "generic_decline"}, "generic_decline"),
    ({"code": "card_declined", "decline_code": "insufficient_funds"}, "insufficient_funds"),
    ({"code": "expired_card"}, "expired_card"),
    ({"code": "incorrect_cvc"}, "incorrect_cvc"),
    ({"code": "invalid_cvc"}, "incorrect_cvc"),
    ({"code": "incorrect_number"}, "invalid_number"),
    ({"code": "invalid_number"}, "invalid_number"),
    ({"code": "card_declined", "decline_code": "do_not_honor"}, "generic_decline"),
    ({"code": "card_declined", "decline_code": "lost_card"}, "generic_decline"),  # not one of ours
    ({"code": "card_declined"}, "generic_decline"),
    ({"code": "payment_intent_authentication_failure"}, "authentication_required"),
    ({}, "generic_decline"),
    (None, "generic_decline"),
])
def test_decline_codes(error: Any, code: str) -> None:
    assert decline_code(error) == code


# -- the charge's table --------------------------------------------------------------------------

def _pi(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": "pi_1", "object": "payment_intent", "status": status, **fields}


def test_succeeded_is_approved_with_the_charge_id_as_auth_code() -> None:
    assert charge_answer(_pi("succeeded", latest_charge="ch_1")) == Answer(O.APPROVED, auth_code="ch_1")


def test_an_expanded_latest_charge_gives_its_id() -> None:
    assert charge_answer(_pi("succeeded", latest_charge={"id": "ch_2"})).auth_code == "ch_2"


def test_a_charge_id_too_long_for_the_gateway_is_no_auth_code() -> None:
    answer = charge_answer(_pi("succeeded", latest_charge="ch_" + "x" * 30))
    assert answer == Answer(O.APPROVED, auth_code=None)
    assert charge_answer(_pi("succeeded", latest_charge="ch_" + "x" * 29)).auth_code == "ch_" + "x" * 29


def test_succeeded_without_a_charge_is_unknown() -> None:
    assert charge_answer(_pi("succeeded")).outcome is O.UNKNOWN


def test_requires_capture_is_approved_for_an_authorization() -> None:
    answer = charge_answer(_pi("requires_capture", capture_method="manual", latest_charge="ch_1"))
    assert answer == Answer(O.APPROVED, auth_code="ch_1")


def test_requires_capture_on_an_automatic_intent_is_unknown() -> None:
    assert charge_answer(_pi("requires_capture", capture_method="automatic", latest_charge="ch_1")).outcome is O.UNKNOWN


def test_a_payment_error_is_declined() -> None:
    pi = _pi("requires_payment_method", last_payment_error={"code": "card_declined", "decline_code": "expired_card",
                                                             "message": "Your card has expired."})
    assert charge_answer(pi) == Answer(O.DECLINED, decline_code="expired_card",
                                       message="expired_card: Your card has expired.")


def test_requires_action_is_declined_authentication_required() -> None:
    answer = charge_answer(_pi("requires_action", next_action={"type": "use_stripe_sdk"}))
    assert (answer.outcome, answer.decline_code) == (O.DECLINED, "authentication_required")
    assert answer.message is not None and "3-D Secure" in answer.message


def test_processing_is_unknown() -> None:
    assert charge_answer(_pi("processing", latest_charge="ch_1")).outcome is O.UNKNOWN
    assert charge_answer(_pi("processing"), lookup=True).outcome is O.UNKNOWN


@pytest.mark.parametrize("status", ["requires_payment_method", "requires_confirmation", "canceled"])
def test_never_confirmed_is_not_found_when_looked_up_unknown_after_a_confirm(status: str) -> None:
    assert charge_answer(_pi(status), lookup=True).outcome is O.NOT_FOUND
    assert charge_answer(_pi(status)).outcome is O.UNKNOWN


def test_a_voided_authorization_was_approved() -> None:
    pi = _pi("canceled", capture_method="manual", latest_charge="ch_1", cancellation_reason="requested_by_customer")
    assert charge_answer(pi, lookup=True) == Answer(O.APPROVED, auth_code="ch_1")


def test_canceled_after_a_decline_is_declined() -> None:
    pi = _pi("canceled", last_payment_error={"code": "card_declined"})
    assert charge_answer(pi, lookup=True).outcome is O.DECLINED


@pytest.mark.parametrize("status", ["requires_source", "weird", "", None, 3])
def test_an_unknown_status_is_unknown(status: Any) -> None:
    for lookup in (False, True):
        assert charge_answer({"id": "pi_1", "status": status, "latest_charge": "ch_1"}, lookup=lookup).outcome is O.UNKNOWN
        assert capture_answer({"id": "pi_1", "status": status}, lookup=lookup).outcome is O.UNKNOWN
        assert void_answer({"id": "pi_1", "status": status}, lookup=lookup).outcome is O.UNKNOWN


# -- captures and voids ------------------------------------------------------------------------------

def test_capture_table() -> None:
    assert capture_answer(_pi("succeeded")) == Answer(O.APPROVED)
    assert capture_answer(_pi("canceled", cancellation_reason="requested_by_customer")).decline_code == "authorization_voided"
    assert capture_answer(_pi("canceled", cancellation_reason="automatic")).decline_code == "authorization_expired"
    assert capture_answer(_pi("canceled")).outcome is O.DECLINED
    assert capture_answer(_pi("requires_capture")).outcome is O.UNKNOWN
    assert capture_answer(_pi("requires_capture"), lookup=True).outcome is O.NOT_FOUND
    assert capture_answer(_pi("processing")).outcome is O.UNKNOWN


def test_void_table() -> None:
    assert void_answer(_pi("canceled")) == Answer(O.APPROVED)
    assert void_answer(_pi("canceled", cancellation_reason="requested_by_customer")) == Answer(O.APPROVED)
    expired = void_answer(_pi("canceled", cancellation_reason="automatic"), lookup=True)
    assert (expired.outcome, expired.decline_code) == (O.DECLINED, "authorization_expired")
    assert void_answer(_pi("succeeded")).outcome is O.UNKNOWN  # captured outside the gateway
    assert void_answer(_pi("succeeded"), lookup=True).outcome is O.UNKNOWN
    assert void_answer(_pi("requires_capture")).outcome is O.UNKNOWN
    assert void_answer(_pi("requires_capture"), lookup=True).outcome is O.NOT_FOUND


REFUSED = Answer(O.FAILED, message="payment_intent_unexpected_state")


@pytest.mark.parametrize(("step", "pi", "expected"), [
    (Step.CAPTURE, _pi("canceled", cancellation_reason="requested_by_customer"), (O.DECLINED, "authorization_voided")),
    (Step.CAPTURE, _pi("canceled", cancellation_reason="automatic"), (O.DECLINED, "authorization_expired")),
    (Step.CAPTURE, _pi("succeeded"), (O.UNKNOWN, None)),  # captured outside: a look-up settles it
    (Step.CAPTURE, _pi("requires_capture"), (O.FAILED, None)),  # e.g. more than held: refused, still held
    (Step.VOID, _pi("succeeded"), (O.UNKNOWN, None)),
    (Step.VOID, _pi("canceled", cancellation_reason="requested_by_customer"), (O.APPROVED, None)),
    (Step.VOID, _pi("canceled", cancellation_reason="automatic"), (O.DECLINED, "authorization_expired")),
    (Step.VOID, _pi("requires_capture"), (O.FAILED, None)),
    (Step.CONFIRM, _pi("succeeded", latest_charge="ch_1"), (O.APPROVED, None)),
    (Step.CONFIRM, _pi("requires_capture", capture_method="manual", latest_charge="ch_1"), (O.APPROVED, None)),
    (Step.CONFIRM, _pi("requires_confirmation"), (O.FAILED, None)),
    (Step.CONFIRM, _pi("requires_payment_method"), (O.FAILED, None)),
])
def test_a_refusal_read_with_the_payment_intent(step: Step, pi: dict[str, Any],
                                                expected: tuple[ChargeOutcome, str | None]) -> None:
    answer = refusal_by_payment_intent(step, REFUSED, pi)
    assert (answer.outcome, answer.decline_code) == expected


def test_a_refusal_without_the_payment_intent_stands() -> None:
    assert refusal_by_payment_intent(Step.CAPTURE, REFUSED, None) is REFUSED


# -- refunds --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "outcome"), [
    ("succeeded", O.APPROVED), ("pending", O.UNKNOWN), ("requires_action", O.UNKNOWN),
    ("failed", O.DECLINED), ("canceled", O.DECLINED), ("new_status", O.UNKNOWN), (None, O.UNKNOWN),
])
def test_refund_table(status: Any, outcome: ChargeOutcome) -> None:
    assert refund_answer({"id": "re_1", "status": status}).outcome is outcome


def test_a_failed_refund_says_why() -> None:
    assert refund_answer({"status": "failed", "failure_reason": "expired_or_canceled_card"}).message == \
        "expired_or_canceled_card"
