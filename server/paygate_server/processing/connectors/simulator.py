"""Connector for the paygate processor simulator's protocol (SPEC §7, docs/simulator.md).

Every answer — or the lack of one — goes through :func:`classify`, the single place that
decides what an HTTP exchange with the processor means. The rule it keeps: only an
answer that says so explicitly is a failure; anything else it cannot be sure about is
``UNKNOWN``, which the reconciler resolves by asking again.

The calls go through the repo's lean HTTP/1.1 keep-alive client
(:mod:`paygate_server.http1client`), not httpx: the processor call is on every payment's
path, and httpx cost ~1.1 ms of CPU per call against ~0.1 ms for the lean client.
"""

from __future__ import annotations

import datetime as _dt
import enum
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlencode

from paygate_server import jsoncodec
from paygate_server.http1client import Transport

from ._transport import (
    Answer,
    PooledConnector,
    connection_pool,
    json_object,
    processor_text,
    report_amount,
    transport_failure,
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
    WebhookRejected,
    WebhookReply,
)

__all__ = ["KIND", "Answer", "Operation", "SimulatorConnector", "classify", "from_url"]

_MAX_MESSAGE = 200
_HEADERS = b"Content-Type: application/json\r\nUser-Agent: paygate-connector\r\n"


class Operation(str, enum.Enum):
    CHARGE = "charge"  # POST /v1/charges (capture true or false)
    CAPTURE = "capture"  # POST /v1/captures
    VOID = "void"  # POST /v1/voids
    LOOKUP = "lookup"  # GET /v1/charges/{reference}
    LOOKUP_CAPTURE = "lookup_capture"  # GET /v1/captures/{reference}
    LOOKUP_VOID = "lookup_void"  # GET /v1/voids/{reference}
    LOOKUP_REFUND = "lookup_refund"  # GET /v1/refunds/{reference}
    REFUND = "refund"  # POST /v1/refunds


# The answer's ``status`` that means done, and the one that means refused, per operation.
_STATUSES = {
    Operation.CHARGE: ("approved", "declined"), Operation.LOOKUP: ("approved", "declined"),
    Operation.CAPTURE: ("captured", "refused"), Operation.LOOKUP_CAPTURE: ("captured", "refused"),
    Operation.VOID: ("voided", "refused"), Operation.LOOKUP_VOID: ("voided", "refused"),
}
_LOOKUPS = {"charge": Operation.LOOKUP, "capture": Operation.LOOKUP_CAPTURE, "void": Operation.LOOKUP_VOID,
            "refund": Operation.LOOKUP_REFUND}
_LOOKUP_PATHS = {"charge": "/v1/charges/", "capture": "/v1/captures/", "void": "/v1/voids/", "refund": "/v1/refunds/"}
_NOT_FOUND = {"charge_not_found", "capture_not_found", "void_not_found", "refund_not_found"}


def _text(value: Any) -> str | None:
    return processor_text(value, _MAX_MESSAGE)


def classify(
    operation: Operation,
    reference: str,
    status_code: int | None,
    body: bytes | None,
    error: BaseException | None = None,
) -> Answer:
    """Map one exchange with the simulator to an outcome.

    ``error`` is the exception raised instead of an answer (timeout, connection refused
    or reset, protocol error). The full table is in docs/simulator.md.
    """
    unknown = ChargeOutcome.UNKNOWN
    failed = transport_failure(error, status_code, lookup=operation in _LOOKUPS.values())
    if failed is not None:
        return failed
    assert status_code is not None
    data = json_object(status_code, body)
    if isinstance(data, Answer):
        return data
    message = _text(data.get("message"))

    if status_code == 200:
        if data.get("reference") != reference:
            return Answer(unknown, message="answer for another reference: outcome unknown")
        status = data.get("status")
        if operation in (Operation.REFUND, Operation.LOOKUP_REFUND):
            if status == "succeeded":
                return Answer(ChargeOutcome.APPROVED, message=message)
            return Answer(unknown, message="unexpected refund status: outcome unknown")
        done, refused = _STATUSES[operation]
        auth_code = _text(data.get("authCode"))
        decline_code = _text(data.get("declineCode"))
        # A charge's approval carries its authorization code; a capture or void has none.
        if status == done and (auth_code or done != "approved"):
            return Answer(ChargeOutcome.APPROVED, auth_code=auth_code)
        if status == refused and decline_code:
            return Answer(ChargeOutcome.DECLINED, decline_code=decline_code, message=message)
        return Answer(unknown, message=f"unexpected {operation.value} status: outcome unknown")

    if data.get("status") != "error":
        return Answer(unknown, message=f"unexpected answer (HTTP {status_code}): outcome unknown")
    code = _text(data.get("code"))
    retryable = data.get("retryable")
    detail = f"{code}: {message}" if code and message else (code or message)

    if operation in _LOOKUPS.values():
        # A failing lookup says nothing about the operation itself.
        if status_code == 404 and code in _NOT_FOUND:
            return Answer(ChargeOutcome.NOT_FOUND, message=detail)
        return Answer(unknown, message=f"lookup failed (HTTP {status_code}): outcome unknown")

    if operation is Operation.REFUND and (
        (status_code == 404 and code == "charge_not_found") or status_code == 422
    ):
        # The processor refused the refund (no such charge, not refundable, too much).
        return Answer(ChargeOutcome.DECLINED, message=detail)

    if 500 <= status_code <= 599 or status_code in (400, 422):
        # Only an explicit "retryable" is a promise that nothing was charged.
        if retryable is True:
            return Answer(ChargeOutcome.RETRY, message=detail)
        if retryable is False:
            return Answer(ChargeOutcome.FAILED, message=detail)
    # 409 reference_conflict, 5xx without "retryable", other statuses: not knowable.
    return Answer(
        unknown, message=f"unclassified answer (HTTP {status_code}, {code}): outcome unknown"
    )


class SimulatorConnector(PooledConnector):
    """Speaks the simulator's protocol over one pool of keep-alive HTTP/1.1 connections.

    ``connect_timeout`` bounds opening a connection; ``read_timeout`` bounds both the wait
    for a free pooled connection (waiting under load is not the processor's fault) and the
    time from writing a request to its complete answer. ``max_connections`` caps the pool.
    ``transport``: what carries the requests instead of that pool (the seam for tests that
    script the processor's answers without a socket); opening connections, waiting for a
    free one and the cap are then its, ``read_timeout`` is still passed with each request.
    """

    name = "simulator"
    resend_answers_s = 0.0  # looked up: it keeps every reference

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        max_connections: int = 256,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._pool, parts = connection_pool(self.base_url, "simulator", "URL", connect_timeout=connect_timeout,
                                            read_timeout=read_timeout, max_connections=max_connections,
                                            transport=transport)
        self._prefix = parts.path  # base_url has no trailing "/"
        self._read_timeout = read_timeout

    def __repr__(self) -> str:
        return f"SimulatorConnector({self.base_url!r})"

    async def _exchange(
        self, operation: Operation, reference: str, method: str, path: str, body: bytes | None
    ) -> Answer:
        # idempotent=True: a request that meets a pooled connection the simulator closed
        # while idle (it ended before a single byte of the answer) is written once more on
        # a new connection, instead of turning into a needless UNKNOWN. That is safe only
        # because sending any of these requests twice has no effect beyond the first:
        # charges and refunds carry the attempt's / refund's reference, which the simulator
        # treats as the idempotency key (the same reference with the same details replays
        # the recorded answer and charges nothing more; other details get 409), and lookups
        # are reads. Timeouts and connections that ended after part of the answer (the
        # dropped answer of card …1026) are never re-sent: they stay UNKNOWN.
        try:
            response = await self._pool.request(
                method, self._prefix + path, _HEADERS, body or b"", self._read_timeout,
                idempotent=True,
            )
        except Exception as exc:  # noqa: BLE001 - every failure to get an answer is UNKNOWN
            return classify(operation, reference, None, None, exc)
        return classify(operation, reference, response.status, response.body)

    async def charge(self, request: ChargeRequest) -> ChargeResult:
        card: dict[str, Any] = {
            "number": request.card.number,
            "expMonth": request.card.exp_month,
            "expYear": request.card.exp_year,
        }
        if request.card.cvc is not None:
            card["cvc"] = request.card.cvc
        payload = jsoncodec.dumps(
            {
                "reference": request.reference,
                "paymentIntentId": request.payment_intent_id,
                "merchantId": request.merchant_id,
                "amount": request.amount,
                "currency": request.currency,
                "card": card,
                # Sent only to authorize: a charge's request is what it was before holds.
                **({} if request.capture else {"capture": False}),
            }
        )
        answer = await self._exchange(
            Operation.CHARGE, request.reference, "POST", "/v1/charges", payload
        )
        return answer.result(request.reference)

    async def capture(self, request: CaptureRequest) -> ChargeResult:
        payload = jsoncodec.dumps({"reference": request.reference, "chargeReference": request.charge_reference,
                                   "amount": request.amount})
        answer = await self._exchange(Operation.CAPTURE, request.reference, "POST", "/v1/captures", payload)
        return answer.result(request.reference)

    async def void(self, request: VoidRequest) -> ChargeResult:
        payload = jsoncodec.dumps({"reference": request.reference, "chargeReference": request.charge_reference})
        answer = await self._exchange(Operation.VOID, request.reference, "POST", "/v1/voids", payload)
        return answer.result(request.reference)

    async def lookup(self, reference: str, kind: SyncKind = "charge", *,
                     processor_id: str | None = None) -> ChargeResult:
        # The simulator keeps every record by the gateway's reference: no processor id needed.
        path = _LOOKUP_PATHS[kind] + quote(reference, safe="")
        return (await self._exchange(_LOOKUPS[kind], reference, "GET", path, None)).result(reference)

    async def cancel_by_reference(self, payment_reference: str, reference: str) -> None:
        return None  # the simulator answers look-ups

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookReply:
        raise WebhookRejected("the simulator sends no notifications: every outcome is in its answers")

    async def refund(self, request: RefundRequest) -> RefundResult:
        payload = jsoncodec.dumps(
            {
                "reference": request.reference,
                "chargeReference": request.charge_reference,
                "amount": request.amount,
            }
        )
        answer = await self._exchange(
            Operation.REFUND, request.reference, "POST", "/v1/refunds", payload
        )
        return RefundResult(request.reference, answer.outcome, answer.message)

    async def settlement_report(self, day: _dt.date) -> list[SettlementRecord]:
        target = self._prefix + "/v1/settlements?" + urlencode({"date": day.isoformat()})
        try:
            response = await self._pool.request(
                "GET", target, _HEADERS, b"", self._read_timeout, idempotent=True
            )
        except Exception as exc:
            raise ConnectorError(f"settlement report: {type(exc).__name__}") from exc
        if response.status != 200:
            raise ConnectorError(f"settlement report: HTTP {response.status}")
        try:
            data = jsoncodec.loads(response.body)
            # A report from before captures existed has no "captures" list.
            records = [_settlement_record(kind, item) for kind, key in _REPORT_LISTS
                       for item in (data.get(key, []) if key == "captures" else data[key])]
        except (jsoncodec.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConnectorError("settlement report: malformed answer") from exc
        return records



_REPORT_LISTS: tuple[tuple[Literal["charge", "capture", "refund"], str], ...] = (
    ("charge", "charges"), ("capture", "captures"), ("refund", "refunds"))


def _settlement_record(kind: Literal["charge", "capture", "refund"], item: dict[str, Any]) -> SettlementRecord:
    """One entry of the report; a charge settles under its own reference, a capture or a
    refund names the charge it belongs to."""
    return SettlementRecord(
        kind=kind,
        reference=str(item["reference"]),
        payment_intent_id=item.get("paymentIntentId"),
        charge_reference=None if kind == "charge" else str(item["chargeReference"]),
        amount=report_amount(item["amount"]),
        currency=str(item["currency"]),
        merchant_id=item.get("merchantId"),
    )


def from_url(url: str, **options: Any) -> SimulatorConnector:
    """Factory used by :func:`~paygate_server.processing.connectors.connector_for_url`."""
    return SimulatorConnector(url, **options)


def _from_account(settings: Mapping[str, str], credentials: Mapping[str, str], **options: Any) -> SimulatorConnector:
    return SimulatorConnector(settings["url"], **options)


KIND = ConnectorKind("simulator", settings={"url": None}, credentials=(), build=_from_account)
