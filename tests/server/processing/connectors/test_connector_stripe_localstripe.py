"""The Stripe connector against localstripe, a fake Stripe run as a real process on
loopback (tests/support/localstripe.py): charges, declines, 3-D Secure, authorizations,
full and partial captures, voids, refunds, every kind of look-up, the record checkpoint,
and an answer lost after the confirm (tests/support/tcp_proxy.py).

localstripe's gaps, and how the tests live with them:

- it ignores ``Idempotency-Key`` (a replay is executed again): that the header is sent is
  tested through the transport seam (test_connector_stripe_requests.py), not here;
- its declining card for payment intents is 4000000000000341 (``card_declined``): the
  card Stripe documents for a generic decline, 4000000000000002, is declined by
  localstripe only when attached to a customer and is approved by a confirm;
- it knows no issuer decline codes (insufficient funds, expired card…): those are
  tested with scripted answers;
- it takes 16-digit numbers and 3-digit CVCs only (no Amex);
- a capture after a void is answered with the canceled intent (real Stripe refuses with
  the intent embedded), and a partial capture is modelled as a refund of the rest;
- it cannot list balance transactions by date: the settlement report is tested with
  scripted answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from paygate_server.processing.connectors import (
    CaptureRequest,
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    RefundRequest,
    VoidRequest,
)
from paygate_server.processing.connectors.stripe import StripeConnector
from tests.support.localstripe import SECRET_KEY, localstripe_or_skip
from tests.support.tcp_proxy import DroppingProxy

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the tables readable
APPROVE = "4242424242424242"
DECLINE = "4000000000000341"
THREE_D_SECURE = "4000002500003155"


def card(number: str = APPROVE) -> CardDetails:
    return CardDetails(number, 12, 2030, "123")


@pytest.fixture(scope="module")
def localstripe_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from localstripe_or_skip(tmp_path_factory)


@pytest.fixture
async def stripe(localstripe_url: str) -> AsyncIterator[StripeConnector]:
    async with StripeConnector(SECRET_KEY, "whsec_test", api_base=localstripe_url,
                               connect_timeout=2.0, read_timeout=10.0) as connector:
        yield connector


@pytest.fixture
def direct(localstripe_url: str) -> Iterator[httpx.Client]:
    """localstripe read directly (to check what it holds), not through the connector."""
    with httpx.Client(base_url=localstripe_url, headers={"Authorization": f"Bearer {SECRET_KEY}"},
                      timeout=5.0) as client:
        yield client


def _intent(direct: httpx.Client, pi_id: str) -> dict[str, Any]:
    answer = direct.get(f"/v1/payment_intents/{pi_id}")
    assert answer.status_code == 200
    data: dict[str, Any] = answer.json()
    return data


def _succeeded_charges(direct: httpx.Client, pi_id: str) -> list[dict[str, Any]]:
    answer = direct.get("/v1/charges", params={"limit": 1000})
    assert answer.status_code == 200
    return [c for c in answer.json()["data"] if c["payment_intent"] == pi_id and c["status"] == "succeeded"]


async def _authorize(stripe: StripeConnector, reference: str, amount: int = 1000) -> str:
    result = await stripe.charge(ChargeRequest(reference, "pi_gw", "mer_1", amount, "USD", card(), capture=False))
    assert result.outcome is O.APPROVED and result.processor_id is not None
    return result.processor_id


# -- charges ---------------------------------------------------------------------------------------------

async def test_approved_with_the_id_recorded_before_the_confirm(stripe: StripeConnector,
                                                                 direct: httpx.Client) -> None:
    seen: list[str] = []

    async def record(pi_id: str) -> None:
        seen.append(_intent(direct, pi_id)["status"])  # as Stripe has it when the id is committed

    result = await stripe.charge(ChargeRequest("txn_ls_ok", "pi_gw_1", "mer_1", 1999, "EUR", card(),
                                               record_processor_id=record))
    assert result.outcome is O.APPROVED
    assert result.processor_id is not None and result.auth_code is not None
    assert seen == ["requires_confirmation"]
    intent = _intent(direct, result.processor_id)
    assert (intent["status"], intent["amount"], intent["currency"], intent["capture_method"]) == (
        "succeeded", 1999, "eur", "automatic")
    assert intent["metadata"] == {"paygate_reference": "txn_ls_ok", "paygate_intent": "pi_gw_1",
                                  "paygate_merchant": "mer_1"}
    assert result.auth_code == intent["latest_charge"]["id"]
    looked = await stripe.lookup("txn_ls_ok", processor_id=result.processor_id)
    assert (looked.outcome, looked.auth_code) == (O.APPROVED, result.auth_code)
    assert len(_succeeded_charges(direct, result.processor_id)) == 1


async def test_declined(stripe: StripeConnector) -> None:
    result = await stripe.charge(ChargeRequest("txn_ls_decline", "pi_gw", "mer_1", 500, "USD", card(DECLINE)))
    assert (result.outcome, result.decline_code) == (O.DECLINED, "generic_decline")
    assert result.message == "card_declined: Your card was declined."
    looked = await stripe.lookup("txn_ls_decline", processor_id=result.processor_id)
    assert (looked.outcome, looked.decline_code) == (O.DECLINED, "generic_decline")


async def test_three_d_secure_is_declined_authentication_required(stripe: StripeConnector) -> None:
    result = await stripe.charge(ChargeRequest("txn_ls_3ds", "pi_gw", "mer_1", 500, "USD", card(THREE_D_SECURE)))
    assert (result.outcome, result.decline_code) == (O.DECLINED, "authentication_required")
    looked = await stripe.lookup("txn_ls_3ds", processor_id=result.processor_id)
    assert (looked.outcome, looked.decline_code) == (O.DECLINED, "authentication_required")


async def test_a_failed_record_confirms_nothing(stripe: StripeConnector, direct: httpx.Client) -> None:
    ids: list[str] = []

    async def record(pi_id: str) -> None:
        ids.append(pi_id)
        raise OSError("disk full")

    result = await stripe.charge(ChargeRequest("txn_ls_norecord", "pi_gw", "mer_1", 500, "USD", card(),
                                               record_processor_id=record))
    assert result.outcome is O.FAILED
    assert result.message is not None and "OSError" in result.message and "disk full" not in result.message
    assert _intent(direct, ids[0])["status"] == "requires_confirmation"
    assert _succeeded_charges(direct, ids[0]) == []
    # Had the gateway recorded it, a look-up would say: never confirmed.
    assert (await stripe.lookup("txn_ls_norecord", processor_id=ids[0])).outcome is O.NOT_FOUND


async def test_a_charge_without_a_recorded_id_is_not_found(stripe: StripeConnector) -> None:
    assert (await stripe.lookup("txn_ls_never")).outcome is O.NOT_FOUND


async def test_an_intent_stripe_no_longer_knows_is_unknown_not_not_found(stripe: StripeConnector) -> None:
    # Its id came from Stripe: Stripe had it, so its 404 cannot mean "never received".
    for kind in ("charge", "capture", "void", "refund"):
        result = await stripe.lookup("txn_ls_x", kind, processor_id="pi_doesnotexist")  # type: ignore[arg-type]
        assert result.outcome is O.UNKNOWN and "no longer knows" in (result.message or "")


async def test_a_rejected_key_is_failed(localstripe_url: str) -> None:
    async with StripeConnector("pk_test_not_a_secret_key", "whsec", api_base=localstripe_url) as wrong:
        result = await wrong.charge(ChargeRequest("txn_ls_key", "pi_gw", "mer_1", 500, "USD", card()))
        assert result.outcome is O.FAILED
        assert result.message is not None and "pk_test" not in result.message


# -- authorizations, captures, voids ---------------------------------------------------------------------

async def test_authorize_then_capture(stripe: StripeConnector, direct: httpx.Client) -> None:
    pi_id = await _authorize(stripe, "txn_ls_auth")
    assert _intent(direct, pi_id)["status"] == "requires_capture"
    assert (await stripe.lookup("txn_ls_auth", processor_id=pi_id)).outcome is O.APPROVED
    assert (await stripe.lookup("cap_ls", "capture", processor_id=pi_id)).outcome is O.NOT_FOUND
    assert (await stripe.lookup("void_ls", "void", processor_id=pi_id)).outcome is O.NOT_FOUND

    result = await stripe.capture(CaptureRequest("cap_ls", "txn_ls_auth", 1000, "USD", charge_processor_id=pi_id))
    assert (result.outcome, result.processor_id) == (O.APPROVED, pi_id)
    intent = _intent(direct, pi_id)
    assert intent["status"] == "succeeded" and intent["metadata"]["paygate_capture"] == "cap_ls"
    assert (await stripe.lookup("cap_ls", "capture", processor_id=pi_id)).outcome is O.APPROVED
    assert (await stripe.lookup("txn_ls_auth", processor_id=pi_id)).outcome is O.APPROVED
    voided = await stripe.lookup("void_ls", "void", processor_id=pi_id)
    # Captured: no void can be, nor be "refused, hold kept" (docs/processors.md, "Stripe").
    assert voided.outcome is O.UNKNOWN and "captured at Stripe" in (voided.message or "")


async def test_partial_capture(stripe: StripeConnector, direct: httpx.Client) -> None:
    pi_id = await _authorize(stripe, "txn_ls_partial", 1000)
    result = await stripe.capture(CaptureRequest("cap_ls_partial", "txn_ls_partial", 600, "USD",
                                                 charge_processor_id=pi_id))
    assert result.outcome is O.APPROVED
    (charge,) = _succeeded_charges(direct, pi_id)
    assert charge["captured"] is True
    assert charge["amount"] - charge["amount_refunded"] == 600  # localstripe releases the rest as a refund


async def test_void_then_capture_is_refused(stripe: StripeConnector, direct: httpx.Client) -> None:
    pi_id = await _authorize(stripe, "txn_ls_void")
    result = await stripe.void(VoidRequest("void_ls_1", "txn_ls_void", charge_processor_id=pi_id))
    assert result.outcome is O.APPROVED
    intent = _intent(direct, pi_id)
    assert intent["status"] == "canceled" and intent["metadata"]["paygate_void"] == "void_ls_1"
    assert (await stripe.lookup("void_ls_1", "void", processor_id=pi_id)).outcome is O.APPROVED
    captured = await stripe.capture(CaptureRequest("cap_ls_late", "txn_ls_void", 1000, "USD", charge_processor_id=pi_id))
    assert (captured.outcome, captured.decline_code) == (O.DECLINED, "authorization_voided")
    looked = await stripe.lookup("cap_ls_late", "capture", processor_id=pi_id)
    assert (looked.outcome, looked.decline_code) == (O.DECLINED, "authorization_voided")
    # The authorization itself was approved (and voided since).
    assert (await stripe.lookup("txn_ls_void", processor_id=pi_id)).outcome is O.APPROVED


async def test_void_after_capture_is_unknown_not_refused(stripe: StripeConnector) -> None:
    pi_id = await _authorize(stripe, "txn_ls_capvoid")
    captured = await stripe.capture(CaptureRequest("cap_ls_cv", "txn_ls_capvoid", 1000, "USD", charge_processor_id=pi_id))
    assert captured.outcome is O.APPROVED
    # localstripe answers the cancel 400 without the intent: the connector retrieves it.
    result = await stripe.void(VoidRequest("void_ls_cv", "txn_ls_capvoid", charge_processor_id=pi_id))
    assert result.outcome is O.UNKNOWN and "captured at Stripe" in (result.message or "")


# -- refunds -----------------------------------------------------------------------------------------------

async def test_refunds_and_their_lookups(stripe: StripeConnector, direct: httpx.Client) -> None:
    result = await stripe.charge(ChargeRequest("txn_ls_refund", "pi_gw", "mer_1", 1000, "USD", card()))
    pi_id = result.processor_id
    assert result.outcome is O.APPROVED and pi_id is not None
    first = await stripe.refund(RefundRequest("re_ls_1", "txn_ls_refund", 300, "USD", charge_processor_id=pi_id))
    second = await stripe.refund(RefundRequest("re_ls_2", "txn_ls_refund", 200, "USD", charge_processor_id=pi_id))
    assert (first.outcome, second.outcome) == (O.APPROVED, O.APPROVED)
    refunds = direct.get("/v1/refunds", params={"payment_intent": pi_id}).json()["data"]
    assert sorted((r["amount"], r["metadata"]["paygate_reference"]) for r in refunds) == [
        (200, "re_ls_2"), (300, "re_ls_1")]
    assert (await stripe.lookup("re_ls_1", "refund", processor_id=pi_id)).outcome is O.APPROVED
    assert (await stripe.lookup("re_ls_2", "refund", processor_id=pi_id)).outcome is O.APPROVED
    assert (await stripe.lookup("re_ls_3", "refund", processor_id=pi_id)).outcome is O.NOT_FOUND


async def test_refund_of_a_declined_charge_is_refused(stripe: StripeConnector) -> None:
    declined = await stripe.charge(ChargeRequest("txn_ls_refund_decl", "pi_gw", "mer_1", 500, "USD", card(DECLINE)))
    assert declined.outcome is O.DECLINED
    result = await stripe.refund(RefundRequest("re_ls_decl", "txn_ls_refund_decl", 500, "USD",
                                               charge_processor_id=declined.processor_id))
    assert result.outcome is O.DECLINED


# -- an answer lost after the confirm -------------------------------------------------------------------------

async def test_a_lost_confirm_answer_is_unknown_then_found_approved(localstripe_url: str, stripe: StripeConnector,
                                                                    direct: httpx.Client) -> None:
    host_port = localstripe_url.removeprefix("http://").split(":")
    proxy = DroppingProxy(host_port[0], int(host_port[1]), lambda data: b"/confirm HTTP/1.1" in data)
    recorded: list[str] = []

    async def record(pi_id: str) -> None:
        recorded.append(pi_id)

    try:
        async with StripeConnector(SECRET_KEY, "whsec", api_base=await proxy.start()) as lossy:
            result = await lossy.charge(ChargeRequest("txn_ls_lost", "pi_gw", "mer_1", 4200, "USD", card(),
                                                      record_processor_id=record))
    finally:
        await proxy.close()
    # The confirm went out on a reused keep-alive connection, and a cut before the first
    # byte of its answer looks like an idle close: the pool writes it once more (safe with
    # Stripe, which replays by Idempotency-Key; localstripe refuses to confirm twice), and
    # that answer is lost as well.
    assert proxy.dropped == 2
    assert result.outcome is O.UNKNOWN
    assert result.message is not None and result.message.startswith("transport error (")
    assert result.processor_id == recorded[0]
    # The reconciler asks with the recorded id: the charge happened, once.
    looked = await stripe.lookup("txn_ls_lost", processor_id=recorded[0])
    assert looked.outcome is O.APPROVED
    charges = _succeeded_charges(direct, recorded[0])
    assert len(charges) == 1 and charges[0]["amount"] == 4200 and looked.auth_code == charges[0]["id"]


# -- secrets ---------------------------------------------------------------------------------------------------

async def test_no_result_carries_the_key_or_a_card_number(localstripe_url: str, stripe: StripeConnector) -> None:
    results: list[object] = []
    for reference, number in (("txn_ls_s1", APPROVE), ("txn_ls_s2", DECLINE), ("txn_ls_s3", THREE_D_SECURE),
                              ("txn_ls_s4", "4242424242424241")):  # not Luhn-valid
        result = await stripe.charge(ChargeRequest(reference, "pi_gw", "mer_1", 500, "USD", card(number)))
        results += [result, await stripe.lookup(reference, processor_id=result.processor_id)]
    async with StripeConnector(SECRET_KEY + "_revoked", "whsec", api_base=localstripe_url + "/nowhere") as wrong:
        results.append(await wrong.charge(ChargeRequest("txn_ls_s5", "pi_gw", "mer_1", 500, "USD", card())))
        results.append(wrong)
    results.append(stripe)
    for shown in map(repr, results):
        assert "sk_test" not in shown
        assert not any(number in shown for number in (APPROVE, DECLINE, THREE_D_SECURE, "4242424242424241"))
