"""Connector for Adyen's Checkout API (SPEC §7, issue #18).

A card payment is one ``POST /v71/payments``; its ``resultCode`` is the outcome. Captures,
cancels and refunds are *requests*: Adyen answers ``201 {"status": "received"}`` and states
the outcome later in a notification (a webhook signed with HMAC-SHA256), so those calls
return ``UNKNOWN`` and the gateway's reconciler waits for :meth:`AdyenConnector.parse_webhook`
to report the outcome. Adyen cannot be asked about a payment by the gateway's reference,
so :meth:`AdyenConnector.lookup` always answers ``UNKNOWN``.

Every exchange goes through :func:`classify`, the one place that decides what it means,
with the explicit :data:`RESULT_CODES` table for a payment's ``resultCode``. The rule it
keeps: only an answer that says so is an outcome or a "nothing done"; anything else is
``UNKNOWN``, never ``FAILED``.

Forwarding card numbers (``paymentMethod.number``/``cvc``) to Adyen needs the merchant
account's raw-card-data permission ("API PCI Payments role", PCI DSS SAQ D): without it
Adyen refuses every payment with a validation error, which is ``FAILED`` (nothing charged).
"""

from __future__ import annotations

import binascii
import datetime as _dt
import enum
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from paygate_server import jsoncodec
from paygate_server.http1client import Transport

from ._transport import (
    Answer,
    PooledConnector,
    auth_code,
    connection_pool,
    json_object,
    keepable_id,
    transport_failure,
)
from .adyen_webhooks import (
    decline_code_for,
    nonempty,
    parse_notification,
    signing_string,
    stated,
    text,
)
from .base import (
    CaptureRequest,
    ChargeOutcome,
    ChargeRequest,
    ChargeResult,
    ConnectorError,
    ConnectorKind,
    RefundRequest,
    RefundResult,
    SettlementRecord,
    SyncKind,
    VoidRequest,
    WebhookReply,
    other_money,
)
from .minor_units import ADYEN, Unrepresentable

__all__ = ["API_VERSION", "KIND", "RESULT_CODES", "AdyenConnector", "Answer", "Operation", "classify",
           "decline_code_for", "signing_string"]


# The Checkout API version, pinned in every URL: Adyen versions the request and answer
# shapes by this path segment, and the tables below (result codes, error bodies, the
# "received" answers of modifications) are read from v71's reference. A new version is a
# reviewed change of this constant and of those tables, never a silent drift.
API_VERSION = "v71"

# v71's PaymentRequest schema requires a ``returnUrl`` (with merchantAccount, reference,
# amount and paymentMethod); it is used only when the shopper must be redirected (3-D
# Secure, redirect methods). This connector declines those results (see RESULT_CODES) and
# never redirects anyone, so the URL is never visited: a name under the reserved
# ``.invalid`` top-level domain (RFC 2606), which no one can own, says exactly that.
_RETURN_URL = "https://no-redirect.paygate.invalid/adyen"

# Adyen's Idempotency-Key is at most 64 characters; anything but printable ASCII could
# also break the request's head, so such a reference is refused before a byte is sent.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,64}")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")


class Operation(str, enum.Enum):
    CHARGE = "charge"  # POST /v71/payments (capture true or false)
    CAPTURE = "capture"  # POST /v71/payments/{pspReference}/captures
    VOID = "void"  # POST /v71/payments/{pspReference}/cancels
    REFUND = "refund"  # POST /v71/payments/{pspReference}/refunds
    CANCEL_BY_REFERENCE = "cancel_by_reference"  # POST /v71/cancels


# A payment's resultCode → outcome (docs.adyen.com/online-payments/build-your-integration/
# payment-result-codes). Any string not here is UNKNOWN.
RESULT_CODES: dict[str, ChargeOutcome] = {
    "Authorised": ChargeOutcome.APPROVED,
    "Refused": ChargeOutcome.DECLINED,  # the issuer or Adyen's risk checks said no; final
    "Cancelled": ChargeOutcome.DECLINED,  # cancelled before processing completed; final
    # "There was an error when the payment was being processed ... This is a final state"
    # (the AUTHORISATION notification follows with success=false): nothing was authorised,
    # but no one declined the card either — the gateway's "processing error, try again".
    "Error": ChargeOutcome.FAILED,
    # 3-D Secure: the shopper must act (redirect, device fingerprint, challenge). Not
    # supported yet: no authorisation exists, and without the shopper none will.
    "RedirectShopper": ChargeOutcome.DECLINED,
    "IdentifyShopper": ChargeOutcome.DECLINED,
    "ChallengeShopper": ChargeOutcome.DECLINED,
    # Not final: the outcome comes in the AUTHORISATION notification.
    "Received": ChargeOutcome.UNKNOWN,
    "Pending": ChargeOutcome.UNKNOWN,
    "PresentToShopper": ChargeOutcome.UNKNOWN,
    # "Authorised for a partial amount ... when the merchant supports Partial Authorisations
    # and the cardholder has insufficient funds": never asked for here (no allowPartialAuth),
    # so not this payment's outcome. Not taken as the whole amount, not failed (part of the
    # money is held): unknown, and like every Adyen attempt left unknown, canceled by its
    # reference past the safety window (processing/reconciler.py), whose TECHNICAL_CANCEL
    # then fails it (docs/processors.md, "Adyen").
    "PartiallyAuthorised": ChargeOutcome.UNKNOWN,
    # In the v71 enum but described for no card payment (it is the stored-value and balance
    # APIs' "operation completed"): no authorisation is stated; the AUTHORISATION says.
    "Success": ChargeOutcome.UNKNOWN,
    # Standalone 3-D Secure authentication only ("proceed to authorise the payment"): this
    # connector never asks for it, and nothing was authorised — nothing charged.
    "AuthenticationFinished": ChargeOutcome.FAILED,
    "AuthenticationNotRequired": ChargeOutcome.FAILED,
}
_AUTHENTICATION = frozenset({"RedirectShopper", "IdentifyShopper", "ChallengeShopper"})
_AUTHENTICATION_ONLY = frozenset({"AuthenticationFinished", "AuthenticationNotRequired"})
# What the operator reads (``transactions.error_message``, ``paygate reconcile``) for the
# results above whose meaning the generic texts would hide.
_RESULT_TEXTS = {
    "PartiallyAuthorised": "Adyen authorised only part of the amount (PartiallyAuthorised), which the gateway "
                           "never asks for: not settled; canceled by its reference past the safety window",
    "Success": "Adyen answered resultCode Success, which states no card authorisation: the outcome comes by "
               "the AUTHORISATION notification",
}

def classify(
    operation: Operation,
    reference: str,
    status_code: int | None,
    body: bytes | None,
    error: BaseException | None = None,
) -> Answer:
    """Map one exchange with Adyen to an outcome. ``error`` is the exception raised
    instead of an answer (timeout, connection refused or lost, malformed answer). A
    payment's answer states the money it authorised, which the charge holds to what it sent
    (a partial authorization, answered only to a request that allows it — this connector's
    never do — or an answer about another payment, is not this payment's outcome)."""
    failed = transport_failure(error, status_code, lookup=False)  # (Adyen is never looked up)
    if failed is not None:
        return failed
    assert status_code is not None
    data = json_object(status_code, body)
    if isinstance(data, Answer):
        return data

    if operation is Operation.CHARGE and status_code == 200:
        return stated(_payment(reference, data), data.get("amount"))
    if operation is not Operation.CHARGE and status_code in (200, 201):
        return _modification(operation, reference, data)
    return _error(status_code, data)


def _payment(reference: str, data: dict[str, Any]) -> Answer:
    """A /payments answer (docs.adyen.com/api-explorer/Checkout/71/post/payments)."""
    unknown = ChargeOutcome.UNKNOWN
    merchant_reference = data.get("merchantReference")
    if merchant_reference is not None and merchant_reference != reference:
        return Answer(unknown, message="answer for another reference: outcome unknown")
    result_code = data.get("resultCode")
    psp_reference = nonempty(data.get("pspReference"))
    if not keepable_id(psp_reference):
        # An id the gateway cannot keep could never be captured, refunded or matched to its
        # notification: as good as none (Adyen's are 16 characters).
        psp_reference = None
    outcome = RESULT_CODES.get(result_code) if isinstance(result_code, str) else None
    if outcome is None:
        return Answer(unknown, message="unexpected resultCode: outcome unknown", processor_id=psp_reference)
    reason = text(data.get("refusalReason"))
    if outcome is ChargeOutcome.APPROVED:
        if psp_reference is None:
            # Without its pspReference the payment could never be captured or refunded; the
            # AUTHORISATION notification carries it.
            return Answer(unknown, message="Authorised without a pspReference: outcome unknown")
        extra = data.get("additionalData")
        # additionalData.authCode is sent only when the merchant account enables it (Customer
        # Area > Developers > Additional data); otherwise there is no code to give: None.
        code = auth_code(text(extra.get("authCode"))) if isinstance(extra, dict) else None
        return Answer(outcome, auth_code=code, processor_id=psp_reference)
    if result_code in _AUTHENTICATION:
        return Answer(outcome, decline_code="authentication_required", processor_id=psp_reference,
                      message=f"Adyen asks for 3-D Secure ({result_code}): not supported by this connector")
    if outcome is ChargeOutcome.DECLINED:
        return Answer(outcome, decline_code=decline_code_for(data.get("refusalReasonCode"), reason),
                      message=f"{result_code}: {reason}" if reason else result_code, processor_id=psp_reference)
    if result_code in _AUTHENTICATION_ONLY:
        return Answer(outcome, processor_id=psp_reference, message=f"Adyen answered {result_code}, an "
                      "authentication-only result this connector never asks for: nothing authorised")
    if result_code in _RESULT_TEXTS:
        return Answer(unknown, processor_id=psp_reference, message=_RESULT_TEXTS[result_code])
    if outcome is ChargeOutcome.FAILED:
        detail = f" ({reason})" if reason else ""
        return Answer(outcome, processor_id=psp_reference,
                      message=f"Adyen: error processing the payment{detail}: nothing authorised")
    return Answer(unknown, processor_id=psp_reference,
                  message=f"payment {result_code}: the outcome comes by notification")


def _modification(operation: Operation, reference: str, data: dict[str, Any]) -> Answer:
    """A capture's, cancel's or refund's answer: a request received, not an outcome."""
    unknown = ChargeOutcome.UNKNOWN
    if data.get("status") != "received":
        return Answer(unknown, message=f"unexpected {operation.value} answer: outcome unknown")
    if data.get("reference") not in (None, reference):
        return Answer(unknown, message="answer for another reference: outcome unknown")
    if operation is Operation.CANCEL_BY_REFERENCE:
        # Adyen has the cancel (what the reconciler needs to know: a cancel it cannot tell
        # was received is sent again); not its outcome, which the notification states.
        return Answer(ChargeOutcome.APPROVED,
                      message="cancel received by Adyen: the outcome comes by a TECHNICAL_CANCEL notification")
    payment = nonempty(data.get("paymentPspReference"))
    return Answer(unknown, processor_id=payment, message=f"{operation.value} received by Adyen: the outcome "
                                                         f"comes by a {_EVENT_OF[operation]} notification")


_EVENT_OF = {Operation.CAPTURE: "CAPTURE", Operation.VOID: "CANCELLATION", Operation.REFUND: "REFUND"}
_PATHS = {Operation.CAPTURE: "captures", Operation.VOID: "cancels", Operation.REFUND: "refunds"}


def _error(status_code: int, data: dict[str, Any]) -> Answer:
    """An error answer: ``{status, errorCode, message, errorType, pspReference}``
    (docs.adyen.com/development-resources/response-handling)."""
    unknown = ChargeOutcome.UNKNOWN
    code = text(data.get("errorCode"))
    if code is None:
        return Answer(unknown, message=f"unclassified answer (HTTP {status_code}): outcome unknown")
    error_type = text(data.get("errorType"))
    # Adyen's free text is left out: errorCode and errorType say what happened, and a
    # validation message may quote the request.
    detail = f"Adyen {error_type or 'error'} {code} (HTTP {status_code})"
    if code == "704":
        # "request already processed or in progress" (422 or 409): the Idempotency-Key was
        # seen before, so the first request may well have charged. Never "nothing done".
        return Answer(unknown, message=f"{detail}: the same reference is in progress, outcome unknown")
    if status_code in (400, 422):
        return Answer(ChargeOutcome.FAILED, message=f"{detail}: request refused, nothing done")
    if status_code in (401, 403):
        return Answer(ChargeOutcome.FAILED, message=f"{detail}: not authorised, nothing done")
    if status_code == 429:
        return Answer(ChargeOutcome.RETRY, message=f"{detail}: rate limited, nothing done")
    return Answer(unknown, message=f"{detail}: outcome unknown")


# -- the connector ---------------------------------------------------------------------------


class AdyenConnector(PooledConnector):
    """Adyen's Checkout API over one pool of keep-alive HTTP/1.1 connections.

    ``api_base``: e.g. ``https://checkout-test.adyen.com`` (live: the company's
    ``https://{PREFIX}-checkout-live.adyenpayments.com/checkout``); ``api_key``: the web
    service user's key (``X-API-Key``); ``hmac_key``: the webhook's HMAC key, hex.
    ``connect_timeout``, ``read_timeout``, ``max_connections`` and ``transport`` as for
    :class:`~paygate_server.processing.connectors.simulator.SimulatorConnector`.

    The merchant account must capture automatically at once (Adyen's default) for a charge
    (``capture`` true) to be money taken when it is Authorised; an authorization is sent
    with ``additionalData.manualCapture`` so it stays held until :meth:`capture`.
    """

    name = "adyen"
    # Look-ups cannot tell, and Adyen answers a request sent again under its Idempotency-Key
    # with its first answer for at least 31 days (docs/processors.md): a week, with margin.
    resend_answers_s = 7 * 86_400.0

    def __init__(
        self,
        api_base: str,
        merchant_account: str,
        api_key: str,
        hmac_key: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        max_connections: int = 256,
        transport: Transport | None = None,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self._pool, parts = connection_pool(self.api_base, "adyen", "apiBase", connect_timeout=connect_timeout,
                                            read_timeout=read_timeout, max_connections=max_connections,
                                            transport=transport)
        if not merchant_account:
            raise ValueError("the adyen connector needs a merchantAccount")
        # Checked here so that a bad credential fails the set-up, not a payment; the
        # messages name the credential, never its value.
        if not _HEADER_VALUE.fullmatch(api_key):
            raise ValueError("the adyen credential 'apiKey' is not a valid header value")
        try:
            self._hmac_key = binascii.unhexlify(hmac_key)
        except (binascii.Error, ValueError):
            raise ValueError("the adyen credential 'hmacKey' is not hexadecimal") from None
        if not self._hmac_key:
            raise ValueError("the adyen credential 'hmacKey' is empty")
        self.merchant_account = merchant_account
        self._headers = (b"Content-Type: application/json\r\nUser-Agent: paygate-connector\r\n"
                         b"X-API-Key: " + api_key.encode("ascii") + b"\r\n")
        self._prefix = f"{parts.path}/{API_VERSION}"
        self._read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"AdyenConnector({self.api_base!r}, merchant_account={self.merchant_account!r})"

    async def _post(self, operation: Operation, reference: str, path: str, payload: dict[str, Any],
                    idempotency_key: str | None = None) -> Answer:
        """``idempotency_key``: the request's key when it is not ``reference`` itself."""
        key = reference if idempotency_key is None else idempotency_key
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            return Answer(ChargeOutcome.FAILED,
                          message="reference unusable as an Idempotency-Key (1-64 printable ASCII): nothing sent")
        headers = self._headers + b"Idempotency-Key: " + key.encode("ascii") + b"\r\n"
        # idempotent=True: a request that met a pooled connection Adyen closed while idle
        # is written once more. Safe because every request carries its Idempotency-Key:
        # Adyen performs it once and replays the first answer (or says 704, in progress).
        try:
            response = await self._pool.request("POST", self._prefix + path, headers, jsoncodec.dumps(payload),
                                                self._read_timeout, idempotent=True)
        except Exception as exc:  # noqa: BLE001 - every failure to get an answer is classified
            return classify(operation, reference, None, None, exc)
        return classify(operation, reference, response.status, response.body)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        """``POST /v71/payments`` with the raw card (see the module's note on PCI)."""
        try:
            amount = _amount(request.amount, request.currency)
        except Unrepresentable as problem:
            return ChargeResult(request.reference, ChargeOutcome.FAILED, message=f"{problem}: nothing sent")
        method: dict[str, Any] = {
            "type": "scheme",
            "number": request.card.number,
            "expiryMonth": f"{request.card.exp_month:02d}",
            "expiryYear": str(request.card.exp_year),
        }
        if request.card.cvc is not None:
            method["cvc"] = request.card.cvc
        payload: dict[str, Any] = {
            "merchantAccount": self.merchant_account,
            "reference": request.reference,
            "amount": amount,
            "paymentMethod": method,
            "shopperInteraction": "Ecommerce",
            "returnUrl": _RETURN_URL,
        }
        if not request.capture:
            # Adyen's per-payment manual capture: authorised and held until a /captures.
            payload["additionalData"] = {"manualCapture": "true"}
        answer = await self._post(Operation.CHARGE, request.reference, "/payments", payload)
        return other_money(answer.result(request.reference), request.amount, request.currency)

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        """Requests the capture; Adyen's CAPTURE notification says whether it happened."""
        try:
            amount = _amount(request.amount, request.currency)
        except Unrepresentable as problem:
            return ChargeResult(request.reference, ChargeOutcome.FAILED, message=f"{problem}: nothing sent")
        payload = {"merchantAccount": self.merchant_account, "reference": request.reference, "amount": amount}
        return await self._modify(Operation.CAPTURE, request.reference, request.charge_processor_id, payload)

    async def void(self, request: VoidRequest) -> ChargeResult:
        """Requests the cancel; Adyen's CANCELLATION notification says whether it happened."""
        payload = {"merchantAccount": self.merchant_account, "reference": request.reference}
        return await self._modify(Operation.VOID, request.reference, request.charge_processor_id, payload)

    async def refund(self, request: RefundRequest) -> RefundResult:
        """Requests the refund; Adyen's REFUND notification says whether it happened."""
        try:
            amount = _amount(request.amount, request.currency)
        except Unrepresentable as problem:
            return RefundResult(request.reference, ChargeOutcome.DECLINED, f"{problem}: nothing sent")
        payload = {"merchantAccount": self.merchant_account, "reference": request.reference, "amount": amount}
        result = await self._modify(Operation.REFUND, request.reference, request.charge_processor_id, payload)
        return RefundResult(request.reference, result.outcome, result.message)

    async def _modify(self, operation: Operation, reference: str, payment: str | None,
                      payload: dict[str, Any]) -> ChargeResult:
        if not payment:
            # Adyen modifies a payment by its pspReference only; without it nothing is sent.
            return ChargeResult(reference, ChargeOutcome.FAILED,
                                message=f"{operation.value}: the payment's pspReference is not known: nothing sent")
        path = f"/payments/{quote(payment, safe='')}/{_PATHS[operation]}"
        return (await self._post(operation, reference, path, payload)).result(reference)

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> ChargeResult:
        """Cancels the authorization made with the gateway's ``payment_reference`` when its
        pspReference never arrived (``POST /v71/cancels``, the cancel's own ``reference``).

        Returns ``APPROVED`` once Adyen has received it — the request, not its outcome,
        which a TECHNICAL_CANCEL notification states —, ``FAILED`` when Adyen refused it or
        it was never sent, ``RETRY`` when rate limited, ``UNKNOWN`` when whether Adyen has it
        is not known (a timeout, a lost or unreadable answer, 704 "in progress"): the
        reconciler sends it again, under the same key, at its next check. A cancel only undoes an
        authorization not yet captured: a payment captured already (a charge, or an
        authorization captured since) stays as it is and the notification says
        success=false.

        Its Idempotency-Key is ``<reference>-cancel``, never ``reference`` itself: Adyen keeps
        a key unique across the whole company account, every endpoint together, and the
        reconciler gives the cancel the payment's own reference (so that its notification
        names the attempt) — under the payment's key Adyen would answer the payment's first
        answer again and cancel nothing, exactly when there is an authorization to release."""
        payload = {"merchantAccount": self.merchant_account, "paymentReference": payment_reference,
                   "reference": reference}
        answer = await self._post(Operation.CANCEL_BY_REFERENCE, reference, "/cancels", payload, f"{reference}-cancel")
        return answer.result(reference)

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        # The Checkout API has no read of a payment or a modification: outcomes arrive only
        # as notifications (and in the reports of the Customer Area).
        return ChargeResult(reference, ChargeOutcome.UNKNOWN,
                            message=f"Adyen cannot be asked about a {kind}: its outcome comes by notification")

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        raise ConnectorError(
            "adyen: settlement reports are files downloaded from the Customer Area by a report "
            "user with its own credentials, which this connector does not hold")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        """Verifies every item of a standard notification, then reads those for this merchant
        account; one item unverifiable or unreadable rejects the whole batch. A verified item
        for another merchant account (a company-level webhook) is listed in the reply's
        ``other_accounts``, not read (:mod:`.adyen_webhooks`)."""
        return parse_notification(self._hmac_key, self.merchant_account, body)


def _amount(amount: int, currency: str) -> dict[str, Any]:
    """Adyen's ``amount`` object: ``value`` in Adyen's minor units (raises Unrepresentable)."""
    return {"value": ADYEN.to_processor(amount, currency), "currency": currency}


def _from_account(settings: Mapping[str, str], credentials: Mapping[str, str], **options: Any) -> AdyenConnector:
    return AdyenConnector(settings["apiBase"], settings["merchantAccount"], credentials["apiKey"],
                          credentials["hmacKey"], **options)


KIND = ConnectorKind("adyen", settings={"apiBase": None, "merchantAccount": None},
                     credentials=("apiKey", "hmacKey"), build=_from_account)
