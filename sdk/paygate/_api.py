"""The endpoint table (SPEC §4, §5): each call's request, and how its answer is read.

Pure functions shared by the sync and async resources, so the two can differ only in
``await``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from . import _json
from ._base_client import (
    Deadline,
    ParamValue,
    RequestOptions,
    answer_error,
    error_from_body,
    printable_ascii,
)
from ._exceptions import APIError, WaitTimeoutError
from ._jwe import check_encrypts, public_key_from_jwk, select_jwk
from ._models import (
    STREAM_END_STATUSES,
    HistoryEvent,
    IntentStatus,
    Page,
    PaymentIntent,
    PaymentStatus,
    Refund,
    WebhookEndpoint,
)
from ._sse import ServerSentEvent

T = TypeVar("T")
#: ``captureMethod`` on create (SPEC §4): charge at once, or authorize and capture later.
CaptureMethod = Literal["automatic", "manual"]

API = "/api/v1"
#: The longest ``wait`` the gateway accepts on ``GET …/payment/status``.
MAX_WAIT = 60
#: Seconds added to a long-poll's ``wait`` for the HTTP read timeout.
LONG_POLL_MARGIN = 15.0
#: If a long-poll answers at once with no change, poll again no sooner than this.
MIN_POLL_INTERVAL = 0.5
#: The read timeout of a status stream; on expiry the stream reconnects (SSE style).
STREAM_READ_TIMEOUT = 75.0
#: How long past a wait's deadline its last HTTP exchange may run: ``wait`` goes in whole
#: seconds, rounded up, so the gateway's answer to the last long-poll may come up to a
#: second after the deadline, and is worth having.
DEADLINE_GRACE = 1.0


def _segment(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def _require_id(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _check_amount(amount: object, *, name: str = "amount") -> int:
    # No floats near money: amounts are integers in the currency's minor unit.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(
            f"{name} must be an int in minor units (cents), not {type(amount).__name__}"
        )
    return amount


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise APIError(f"expected a JSON object for {what}, got {type(body).__name__}")
    return body


def parse_page(body: Any, item: Callable[[Mapping[str, Any]], T], what: str) -> Page[T]:
    obj = _object(body, what)
    data = obj.get("data")
    if not isinstance(data, list):
        raise APIError(f'expected a "data" list for {what}')
    return Page(
        data=tuple(item(x) for x in data if isinstance(x, dict)),
        has_more=obj.get("hasMore") is True,
        raw=dict(obj),
    )


def next_cursor(page: Page[PaymentIntent], seen: set[str]) -> str:
    """The ``startingAfter`` of the page after ``page`` (which has ``hasMore``): its last
    intent's id. ``APIError`` if that id is empty or was a cursor already (a gateway that
    ignores ``startingAfter`` would otherwise be paged through forever)."""
    cursor = page.data[-1].payment_intent_id
    if not cursor or cursor in seen:
        raise APIError(
            "the gateway answered hasMore with a page that does not advance the list "
            f"(last id {cursor!r} is empty or was already a cursor)"
        )
    seen.add(cursor)
    return cursor


# -- payment intents ----------------------------------------------------------------------


def create_intent(
    *,
    amount: int,
    currency: str,
    product_details: Mapping[str, Any],
    description: str | None,
    metadata: Mapping[str, str] | None,
    merchant_id: str | None,
    capture_method: CaptureMethod | None,
    idempotency_key: str | None,
) -> RequestOptions:
    body: dict[str, Any] = {
        "amount": _check_amount(amount),
        "currency": currency,
        "productDetails": dict(product_details),
    }
    if capture_method is not None:
        # Only its type is checked here: the gateway judges the value (400 parameter_invalid),
        # so a method it adds later needs no new SDK.
        if not isinstance(capture_method, str):
            raise TypeError(
                f"capture_method must be a str, not {type(capture_method).__name__}"
            )
        body["captureMethod"] = capture_method
    if description is not None:
        body["description"] = description
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if merchant_id is not None:
        body["merchantId"] = merchant_id
    return RequestOptions(
        "POST", f"{API}/payment/intent", body=body, idempotency_key=idempotency_key
    )


def get_intent(payment_intent_id: str) -> RequestOptions:
    return RequestOptions("GET", f"{API}/payment/intent/{_segment(payment_intent_id, 'id')}")


def list_intents(
    *, limit: int | None, starting_after: str | None, status: str | None
) -> RequestOptions:
    params: dict[str, ParamValue] = {}
    if limit is not None:
        params["limit"] = limit
    if starting_after is not None:
        params["startingAfter"] = starting_after
    if status is not None:
        params["status"] = str(status)
    return RequestOptions("GET", f"{API}/payment/intents", params=params)


def cancel_intent(payment_intent_id: str, idempotency_key: str | None) -> RequestOptions:
    body = {"paymentIntentId": _require_id(payment_intent_id, "payment_intent_id")}
    return RequestOptions(
        "POST", f"{API}/payment/cancel", body=body, idempotency_key=idempotency_key
    )


def capture_intent(
    payment_intent_id: str, *, amount: int | None, idempotency_key: str | None
) -> RequestOptions:
    body: dict[str, Any] = {"paymentIntentId": _require_id(payment_intent_id, "payment_intent_id")}
    # No amount: the gateway captures all of amountCapturable (SPEC §4).
    if amount is not None:
        body["amount"] = _check_amount(amount)
    return RequestOptions(
        "POST", f"{API}/payment/capture", body=body, idempotency_key=idempotency_key
    )


def process_intent(
    payment_intent_id: str,
    *,
    token: str | None,
    encrypted_card: str | None,
    idempotency_key: str | None,
) -> RequestOptions:
    if (token is None) == (encrypted_card is None):
        raise ValueError("pass exactly one of token= or encrypted_card=")
    details = {"token": token} if token is not None else {"encryptedCard": encrypted_card}
    body = {
        "paymentIntentId": _require_id(payment_intent_id, "payment_intent_id"),
        "paymentMethod": "card",
        "paymentDetails": details,
    }
    return RequestOptions(
        "POST", f"{API}/payment/process", body=body, idempotency_key=idempotency_key
    )


def get_status(
    payment_intent_id: str,
    wait: float | None,
    timeout: httpx.Timeout,
    deadline: Deadline | None = None,
) -> RequestOptions:
    params: dict[str, ParamValue] = {
        "paymentIntentId": _require_id(payment_intent_id, "payment_intent_id")
    }
    if wait is not None:
        if not 0 <= wait <= MAX_WAIT:
            raise ValueError(f"wait must be between 0 and {MAX_WAIT} seconds")
        # Whole seconds on the wire; round up so the gateway never answers early.
        seconds = math.ceil(wait)
        params["wait"] = seconds
        if timeout.read is not None:
            timeout = httpx.Timeout(
                connect=timeout.connect,
                read=max(timeout.read, seconds + LONG_POLL_MARGIN),
                write=timeout.write,
                pool=timeout.pool,
            )
    return RequestOptions(
        "GET", f"{API}/payment/status", params=params, timeout=timeout, deadline=deadline
    )


def stream_status(
    payment_intent_id: str,
    last_event_id: str | None,
    timeout: httpx.Timeout,
    read: float | None,
    deadline: Deadline | None = None,
) -> RequestOptions:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    # The id is the peer's text: one that is not printable ASCII cannot go back in a header
    # (httpx raised UnicodeEncodeError for non-ASCII), so the stream reopens without it.
    if last_event_id is not None and printable_ascii(last_event_id):
        headers["Last-Event-ID"] = last_event_id
    return RequestOptions(
        "GET",
        f"{API}/payment/status/stream",
        params={"paymentIntentId": _require_id(payment_intent_id, "payment_intent_id")},
        timeout=httpx.Timeout(
            connect=timeout.connect, read=read, write=timeout.write, pool=timeout.pool
        ),
        stream=True,
        headers=headers,
        deadline=deadline,
    )


def history(payment_intent_id: str) -> RequestOptions:
    return RequestOptions(
        "GET", f"{API}/payment/intent/{_segment(payment_intent_id, 'id')}/history"
    )


def parse_history(body: Any) -> list[HistoryEvent]:
    return list(parse_page(body, HistoryEvent.from_dict, "an intent's history").data)


def parse_intent(body: Any) -> PaymentIntent:
    return PaymentIntent.from_dict(_object(body, "a payment intent"))


def parse_status(body: Any) -> PaymentStatus:
    return PaymentStatus.from_dict(_object(body, "a payment status"))


def _same_intent(status: PaymentStatus, payment_intent_id: str) -> PaymentStatus:
    # The id asked about travels in the query string, which a cache or proxy in front of the
    # gateway may ignore: another intent's "succeeded" must not pass for this one's.
    if status.payment_intent_id and status.payment_intent_id != payment_intent_id:
        raise APIError(
            f"the gateway answered the status of {status.payment_intent_id!r} when asked "
            f"about {payment_intent_id!r}"
        )
    return status


def status_parser(payment_intent_id: str) -> Callable[[Any], PaymentStatus]:
    """``parse_status`` for an answer about ``payment_intent_id`` (APIError for another)."""
    return lambda body: _same_intent(parse_status(body), payment_intent_id)


# -- waiting for a status -----------------------------------------------------------------


def wait_statuses(statuses: Iterable[str | IntentStatus]) -> frozenset[str]:
    wanted = frozenset(str(s) for s in statuses)
    if not wanted:
        raise ValueError("statuses must not be empty")
    return wanted


class WaitPlan:
    """The long-poll loop's decisions, shared by the sync and async ``wait_for_status``."""

    def __init__(
        self, payment_intent_id: str, statuses: frozenset[str], timeout: float | None, now: float
    ) -> None:
        if timeout is not None and not timeout >= 0:  # NaN too
            raise ValueError("timeout must be >= 0 seconds, or None for no deadline")
        self.payment_intent_id = payment_intent_id
        self.statuses = statuses
        self.timeout = timeout
        # An infinite timeout is no deadline (its "remaining" would not fit a ``wait``).
        self.deadline = None if timeout is None or math.isinf(timeout) else now + timeout
        self.last: PaymentStatus | None = None
        self._polled = False

    def http_deadline(self) -> Deadline | None:
        """The deadline of the wait's HTTP exchanges, retries included (``None``: none)."""
        if self.deadline is None:
            return None
        return Deadline(self.deadline + DEADLINE_GRACE, self.timeout_error)

    def remaining(self, now: float) -> float | None:
        """Seconds left (``None``: no deadline); raises ``WaitTimeoutError`` past it."""
        if self.deadline is None:
            return None
        remaining = self.deadline - now
        if remaining <= 0:
            raise self.timeout_error()
        return remaining

    def next_wait(self, now: float) -> int:
        """The ``wait`` of the next poll; raises ``WaitTimeoutError`` past the deadline
        (but there is always a first poll, so ``timeout=0`` means "check once").

        The gateway's long-poll ends at once only on a final status or
        ``requires_capture``; a wait that also ends on another one (``failed`` by default)
        checks first without waiting, so an intent already there is answered at once."""
        first, self._polled = not self._polled, True
        if first and self.deadline is not None and self.deadline <= now:
            return 0
        if first and not self.statuses <= STREAM_END_STATUSES:
            return 0
        remaining = self.remaining(now)
        if remaining is None:
            return MAX_WAIT
        return min(MAX_WAIT, math.ceil(remaining))

    def done(self, status: PaymentStatus, started: float, now: float) -> tuple[bool, float]:
        """Whether ``status`` ends the wait; if not, how long to pause before the next poll
        (non-zero only when the gateway answered at once with nothing new, so a gateway that
        ignores ``wait`` is not hammered)."""
        previous, self.last = self.last, status
        if status.status in self.statuses:
            return True, 0.0
        unchanged = previous is not None and previous.status == status.status
        if unchanged and now - started < MIN_POLL_INTERVAL:
            pause = MIN_POLL_INTERVAL - (now - started)
            if self.deadline is not None:
                pause = min(pause, max(self.deadline - now, 0.0))
            return False, pause
        return False, 0.0

    def timeout_error(self) -> WaitTimeoutError:
        last = self.last.status if self.last is not None else "none seen"
        return WaitTimeoutError(
            f"payment intent {self.payment_intent_id} did not reach "
            f"{'/'.join(sorted(self.statuses))} within {self.timeout} s (last status: {last})",
            last_status=self.last,
        )


def status_from_event(
    event: ServerSentEvent, response: httpx.Response, payment_intent_id: str
) -> PaymentStatus | None:
    """The status of ``payment_intent_id`` an SSE event of ``response`` carries; ``None``
    for events to skip (keep-alives, other types); raises the mapped exception for an error
    event, and ``APIError`` for a status the SDK must not guess at (an amount that is not an
    integer, another intent's).
    Either carries the stream's request id (an error event's own ``requestId`` first)."""
    try:
        data = _json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if event.event == "error" or isinstance(data.get("error"), dict):
        raise error_from_body(
            data,
            status=None,
            headers=response.headers,
            text=event.data,
            fallback_message="the status stream failed",
        )
    if not isinstance(data.get("status"), str):
        return None
    try:
        return _same_intent(PaymentStatus.from_dict(data), payment_intent_id)
    except APIError as exc:
        raise answer_error(response, exc.message) from None


def is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "text/event-stream"


def not_event_stream(response: httpx.Response) -> APIError:
    return answer_error(response, "the status stream did not answer text/event-stream")


# -- refunds, webhook endpoints, keys -----------------------------------------------------


def create_refund(
    payment_intent_id: str,
    *,
    amount: int | None,
    reason: str | None,
    idempotency_key: str | None,
) -> RequestOptions:
    body: dict[str, Any] = {"paymentIntentId": _require_id(payment_intent_id, "payment_intent_id")}
    if amount is not None:
        body["amount"] = _check_amount(amount)
    if reason is not None:
        body["reason"] = reason
    return RequestOptions(
        "POST", f"{API}/payment/refund", body=body, idempotency_key=idempotency_key
    )


def get_refund(refund_id: str) -> RequestOptions:
    return RequestOptions("GET", f"{API}/payment/refund/{_segment(refund_id, 'refund_id')}")


def parse_refund(body: Any) -> Refund:
    return Refund.from_dict(_object(body, "a refund"))


def create_webhook_endpoint(
    url: str, events: Iterable[str] | None, idempotency_key: str | None
) -> RequestOptions:
    body: dict[str, Any] = {"url": _require_id(url, "url")}
    if events is not None:
        if isinstance(events, str):
            raise TypeError("events must be a list of event types, not a string")
        body["events"] = list(events)
    return RequestOptions("POST", f"{API}/webhooks", body=body, idempotency_key=idempotency_key)


def list_webhook_endpoints(*, limit: int | None, starting_after: str | None) -> RequestOptions:
    params: dict[str, ParamValue] = {}
    if limit is not None:
        params["limit"] = limit
    if starting_after is not None:
        params["startingAfter"] = starting_after
    return RequestOptions("GET", f"{API}/webhooks", params=params)


def delete_webhook_endpoint(webhook_endpoint_id: str) -> RequestOptions:
    return RequestOptions("DELETE", f"{API}/webhooks/{_segment(webhook_endpoint_id, 'id')}")


def parse_webhook_endpoint(body: Any) -> WebhookEndpoint:
    return WebhookEndpoint.from_dict(_object(body, "a webhook endpoint"))


def parse_webhook_endpoints(body: Any) -> Page[WebhookEndpoint]:
    return parse_page(body, WebhookEndpoint.from_dict, "webhook endpoints")


def card_keys() -> RequestOptions:
    # The checkout's public JWKS: what browsers fetch, so it is neither signed nor
    # authenticated (SPEC §3 signs /api/v1 calls).
    return RequestOptions("GET", "/checkout/v1/keys", signed=False)


def parse_jwks(body: Any) -> dict[str, Any]:
    obj = _object(body, "the checkout keys")
    if not isinstance(obj.get("keys"), list):
        raise APIError('expected a JWKS with a "keys" list from /checkout/v1/keys')
    # The key encrypt_card() will use must be usable: otherwise the merchant would get a
    # ValueError (as if their own input were wrong) and the bad JWKS would stay cached.
    try:
        jwk = select_jwk(obj)
        check_encrypts(public_key_from_jwk(jwk))
    except ValueError as exc:
        raise APIError(f"the gateway's JWKS (/checkout/v1/keys) has no usable key: {exc}") from None
    if not isinstance(jwk.get("kid"), str) or not jwk.get("kid"):
        raise APIError('the gateway\'s JWKS (/checkout/v1/keys) key has no "kid"')
    return dict(obj)
