"""The API resources, sync and async, with the same names and arguments.

Requests are described and answers parsed by ``_api``; these classes only send (through
the client's retry loop) and, for the waiting calls, loop.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from . import _api
from ._api import CaptureMethod
from ._base_client import answer_error, undecodable
from ._models import (
    DEFAULT_WAIT_STATUSES,
    STREAM_END_STATUSES,
    HistoryEvent,
    IntentStatus,
    Page,
    PaymentIntent,
    PaymentStatus,
    Refund,
    WebhookEndpoint,
)
from ._sse import SSEDecoder, SSEError

if TYPE_CHECKING:
    from ._client import AsyncClient, Client

__all__ = [
    "AsyncPaymentIntents",
    "AsyncRefunds",
    "AsyncWebhookEndpoints",
    "PaymentIntents",
    "Refunds",
    "WebhookEndpoints",
]

Statuses = Iterable[str | IntentStatus]


def _parse_intent_page(body: Any) -> Page[PaymentIntent]:
    return _api.parse_page(body, PaymentIntent.from_dict, "intents")


def _reconnect_delay(delay: float, decoder: SSEDecoder) -> float:
    # The stream's own "retry:" (milliseconds) is a floor, capped like Retry-After.
    if decoder.retry is not None:
        delay = max(delay, min(decoder.retry / 1000.0, 60.0))
    return delay


class PaymentIntents:
    """``client.payment_intents``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        amount: int,
        currency: str,
        product_details: Mapping[str, Any],
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        merchant_id: str | None = None,
        capture_method: CaptureMethod | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Create an intent (``amount`` in minor units). The answer has ``client_secret``.

        ``capture_method="manual"`` authorizes without charging: ``process`` then ends in
        ``requires_capture`` and ``capture`` (or ``cancel``) settles the hold. Omitted, the
        gateway's default applies (``"automatic"``)."""
        options = _api.create_intent(
            amount=amount,
            currency=currency,
            product_details=product_details,
            description=description,
            metadata=metadata,
            merchant_id=merchant_id,
            capture_method=capture_method,
            idempotency_key=idempotency_key,
        )
        return self._client._request_parsed(options, _api.parse_intent)

    def get(self, payment_intent_id: str) -> PaymentIntent:
        return self._client._request_parsed(_api.get_intent(payment_intent_id), _api.parse_intent)

    def list(
        self,
        *,
        limit: int | None = None,
        starting_after: str | None = None,
        status: str | IntentStatus | None = None,
    ) -> Page[PaymentIntent]:
        """One page, newest first."""
        options = _api.list_intents(limit=limit, starting_after=starting_after, status=status)
        return self._client._request_parsed(options, _parse_intent_page)

    def list_auto_paging(
        self,
        *,
        limit: int | None = None,
        starting_after: str | None = None,
        status: str | IntentStatus | None = None,
    ) -> Iterator[PaymentIntent]:
        """Every intent, newest first, fetching pages (of ``limit``) as needed."""
        cursor = starting_after
        seen: set[str] = set()
        while True:
            page = self.list(limit=limit, starting_after=cursor, status=status)
            yield from page.data
            if not page.has_more or not page.data:
                return
            cursor = _api.next_cursor(page, seen)

    def cancel(
        self, payment_intent_id: str, *, idempotency_key: str | None = None
    ) -> PaymentIntent:
        """Cancel a ``created``, ``failed`` or ``requires_capture`` intent (else
        ``InvalidRequestError``, 409). On ``requires_capture`` the gateway voids the
        authorization at the processor, releasing the held funds."""
        options = _api.cancel_intent(payment_intent_id, idempotency_key)
        return self._client._request_parsed(options, _api.parse_intent)

    def capture(
        self,
        payment_intent_id: str,
        *,
        amount: int | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Capture a ``requires_capture`` intent's hold: ``amount`` (minor units, at most
        ``amount_capturable``) or, by default, all of it. One capture per authorization:
        the rest is released.

        Returns the intent: ``succeeded``, or ``in_progress`` if the processor has not
        answered within the gateway's wait budget (``wait_for_status`` then). A capture the
        processor refused with nothing changed leaves ``requires_capture`` with
        ``last_error``; one refused because the hold is gone ends ``canceled`` with
        ``cancellation_reason="expired"``. Any other status: ``InvalidRequestError`` (409
        ``intent_state_conflict``)."""
        options = _api.capture_intent(
            payment_intent_id, amount=amount, idempotency_key=idempotency_key
        )
        return self._client._request_parsed(options, _api.parse_intent)

    def process(
        self,
        payment_intent_id: str,
        *,
        token: str | None = None,
        encrypted_card: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        """Charge the intent with a checkout token or an ``encrypt_card()`` JWE.

        Returns the intent: ``in_progress``, or the processor's outcome if it answered in
        time (``succeeded``, ``failed``, or ``requires_capture`` for a manual-capture
        intent). A decline is *returned* (status ``failed``, ``last_error`` set), not
        raised; call ``.raise_if_failed()`` on the result to get a ``CardError`` instead.
        """
        options = _api.process_intent(
            payment_intent_id,
            token=token,
            encrypted_card=encrypted_card,
            idempotency_key=idempotency_key,
        )
        return self._client._request_parsed(options, _api.parse_intent)

    def status(self, payment_intent_id: str, *, wait: float | None = None) -> PaymentStatus:
        """The status; with ``wait`` (0-60 s) the gateway holds the request until the
        status changes or ``wait`` passes."""
        options = _api.get_status(payment_intent_id, wait, self._client.timeout)
        return self._client._request_parsed(options, _api.status_parser(payment_intent_id))

    def wait_for_status(
        self,
        payment_intent_id: str,
        statuses: Statuses = DEFAULT_WAIT_STATUSES,
        *,
        timeout: float | None = 60.0,
    ) -> PaymentStatus:
        """Long-poll until the status is one of ``statuses`` (default: succeeded, canceled,
        failed, requires_capture) and return it; ``WaitTimeoutError`` once ``timeout``
        seconds have passed (``None``: no deadline)."""
        client = self._client
        wanted = _api.wait_statuses(statuses)
        plan = _api.WaitPlan(payment_intent_id, wanted, timeout, client._clock())
        while True:
            wait = plan.next_wait(client._clock())
            started = client._clock()
            options = _api.get_status(
                payment_intent_id, wait, client.timeout, plan.http_deadline()
            )
            status = client._request_parsed(options, _api.status_parser(payment_intent_id))
            done, pause = plan.done(status, started, client._clock())
            if done:
                return status
            if pause > 0:
                client._sleep(pause)

    def stream_status(
        self,
        payment_intent_id: str,
        *,
        until: Statuses = STREAM_END_STATUSES,
        timeout: float | None = None,
    ) -> Iterator[PaymentStatus]:
        """Yield each status change from the server-sent event stream, ending after a
        status in ``until`` (default ``STREAM_END_STATUSES``: succeeded, canceled,
        requires_capture) or when the gateway ends the stream. A dropped connection is
        reopened (with ``Last-Event-ID``), up to ``max_retries`` times in a row; ``timeout``
        (seconds, ``None``: none) bounds the whole stream with ``WaitTimeoutError``. Close
        the generator to stop early."""
        client = self._client
        wanted = _api.wait_statuses(until)
        plan = _api.WaitPlan(payment_intent_id, wanted, timeout, client._clock())
        last_event_id: str | None = None
        failures = 0
        while True:
            remaining = plan.remaining(client._clock())
            read = _api.STREAM_READ_TIMEOUT
            if remaining is not None:
                read = min(read, remaining)
            prepared = client._prepare(
                _api.stream_status(
                    payment_intent_id, last_event_id, client.timeout, read, plan.http_deadline()
                )
            )
            response = client._send(prepared)
            decoder = SSEDecoder()
            try:
                if not _api.is_event_stream(response):
                    raise _api.not_event_stream(response)
                for chunk in response.iter_bytes():
                    for event in decoder.feed(chunk):
                        status = _api.status_from_event(event, response, payment_intent_id)
                        if status is None:
                            continue
                        if plan.last is None or status.raw != plan.last.raw:
                            # Only news resets the failure count: a gateway that repeats
                            # the last status and drops the connection, again and again,
                            # must not be reconnected to forever.
                            failures = 0
                            plan.last = status
                            yield status
                        if status.status in plan.statuses:
                            return
                    plan.remaining(client._clock())  # raises past the deadline
                return
            except httpx.DecodingError as exc:
                raise undecodable(response) from exc
            except SSEError as exc:
                raise answer_error(response, str(exc)) from None
            except httpx.ReadTimeout:
                # Idle past the read timeout: reopen at once (the deadline check is first).
                pass
            except httpx.TransportError as exc:
                delay = client._retry_or_raise(prepared, failures, exc=exc)
                failures += 1
                client._sleep(_reconnect_delay(delay, decoder))
            finally:
                response.close()
            last_event_id = decoder.last_event_id or last_event_id

    def history(self, payment_intent_id: str) -> builtins.list[HistoryEvent]:
        """Every change of the intent, oldest first."""
        return self._client._request_parsed(_api.history(payment_intent_id), _api.parse_history)


class AsyncPaymentIntents:
    """``async_client.payment_intents``: ``PaymentIntents``, awaited."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        amount: int,
        currency: str,
        product_details: Mapping[str, Any],
        description: str | None = None,
        metadata: Mapping[str, str] | None = None,
        merchant_id: str | None = None,
        capture_method: CaptureMethod | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        options = _api.create_intent(
            amount=amount,
            currency=currency,
            product_details=product_details,
            description=description,
            metadata=metadata,
            merchant_id=merchant_id,
            capture_method=capture_method,
            idempotency_key=idempotency_key,
        )
        return await self._client._request_parsed(options, _api.parse_intent)

    async def get(self, payment_intent_id: str) -> PaymentIntent:
        return await self._client._request_parsed(
            _api.get_intent(payment_intent_id), _api.parse_intent
        )

    async def list(
        self,
        *,
        limit: int | None = None,
        starting_after: str | None = None,
        status: str | IntentStatus | None = None,
    ) -> Page[PaymentIntent]:
        options = _api.list_intents(limit=limit, starting_after=starting_after, status=status)
        return await self._client._request_parsed(options, _parse_intent_page)

    async def list_auto_paging(
        self,
        *,
        limit: int | None = None,
        starting_after: str | None = None,
        status: str | IntentStatus | None = None,
    ) -> AsyncIterator[PaymentIntent]:
        cursor = starting_after
        seen: set[str] = set()
        while True:
            page = await self.list(limit=limit, starting_after=cursor, status=status)
            for intent in page.data:
                yield intent
            if not page.has_more or not page.data:
                return
            cursor = _api.next_cursor(page, seen)

    async def cancel(
        self, payment_intent_id: str, *, idempotency_key: str | None = None
    ) -> PaymentIntent:
        options = _api.cancel_intent(payment_intent_id, idempotency_key)
        return await self._client._request_parsed(options, _api.parse_intent)

    async def capture(
        self,
        payment_intent_id: str,
        *,
        amount: int | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        options = _api.capture_intent(
            payment_intent_id, amount=amount, idempotency_key=idempotency_key
        )
        return await self._client._request_parsed(options, _api.parse_intent)

    async def process(
        self,
        payment_intent_id: str,
        *,
        token: str | None = None,
        encrypted_card: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentIntent:
        options = _api.process_intent(
            payment_intent_id,
            token=token,
            encrypted_card=encrypted_card,
            idempotency_key=idempotency_key,
        )
        return await self._client._request_parsed(options, _api.parse_intent)

    async def status(self, payment_intent_id: str, *, wait: float | None = None) -> PaymentStatus:
        options = _api.get_status(payment_intent_id, wait, self._client.timeout)
        return await self._client._request_parsed(options, _api.status_parser(payment_intent_id))

    async def wait_for_status(
        self,
        payment_intent_id: str,
        statuses: Statuses = DEFAULT_WAIT_STATUSES,
        *,
        timeout: float | None = 60.0,
    ) -> PaymentStatus:
        client = self._client
        wanted = _api.wait_statuses(statuses)
        plan = _api.WaitPlan(payment_intent_id, wanted, timeout, client._clock())
        while True:
            wait = plan.next_wait(client._clock())
            started = client._clock()
            options = _api.get_status(
                payment_intent_id, wait, client.timeout, plan.http_deadline()
            )
            status = await client._request_parsed(options, _api.status_parser(payment_intent_id))
            done, pause = plan.done(status, started, client._clock())
            if done:
                return status
            if pause > 0:
                await client._sleep(pause)

    async def stream_status(
        self,
        payment_intent_id: str,
        *,
        until: Statuses = STREAM_END_STATUSES,
        timeout: float | None = None,
    ) -> AsyncIterator[PaymentStatus]:
        client = self._client
        wanted = _api.wait_statuses(until)
        plan = _api.WaitPlan(payment_intent_id, wanted, timeout, client._clock())
        last_event_id: str | None = None
        failures = 0
        while True:
            remaining = plan.remaining(client._clock())
            read = _api.STREAM_READ_TIMEOUT
            if remaining is not None:
                read = min(read, remaining)
            prepared = client._prepare(
                _api.stream_status(
                    payment_intent_id, last_event_id, client.timeout, read, plan.http_deadline()
                )
            )
            response = await client._send(prepared)
            decoder = SSEDecoder()
            try:
                if not _api.is_event_stream(response):
                    raise _api.not_event_stream(response)
                async for chunk in response.aiter_bytes():
                    for event in decoder.feed(chunk):
                        status = _api.status_from_event(event, response, payment_intent_id)
                        if status is None:
                            continue
                        if plan.last is None or status.raw != plan.last.raw:
                            failures = 0  # only news resets it (see PaymentIntents)
                            plan.last = status
                            yield status
                        if status.status in plan.statuses:
                            return
                    plan.remaining(client._clock())  # raises past the deadline
                return
            except httpx.DecodingError as exc:
                raise undecodable(response) from exc
            except SSEError as exc:
                raise answer_error(response, str(exc)) from None
            except httpx.ReadTimeout:
                pass
            except httpx.TransportError as exc:
                delay = client._retry_or_raise(prepared, failures, exc=exc)
                failures += 1
                await client._sleep(_reconnect_delay(delay, decoder))
            finally:
                await response.aclose()
            last_event_id = decoder.last_event_id or last_event_id

    async def history(self, payment_intent_id: str) -> builtins.list[HistoryEvent]:
        return await self._client._request_parsed(
            _api.history(payment_intent_id), _api.parse_history
        )


class Refunds:
    """``client.refunds``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        payment_intent_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Refund ``amount`` (minor units; default: all that remains) of a charged intent."""
        options = _api.create_refund(
            payment_intent_id, amount=amount, reason=reason, idempotency_key=idempotency_key
        )
        return self._client._request_parsed(options, _api.parse_refund)

    def get(self, refund_id: str) -> Refund:
        """A refund as it is now: one answered ``pending`` or ``unknown`` settles later."""
        return self._client._request_parsed(_api.get_refund(refund_id), _api.parse_refund)


class AsyncRefunds:
    """``async_client.refunds``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        payment_intent_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        options = _api.create_refund(
            payment_intent_id, amount=amount, reason=reason, idempotency_key=idempotency_key
        )
        return await self._client._request_parsed(options, _api.parse_refund)

    async def get(self, refund_id: str) -> Refund:
        return await self._client._request_parsed(_api.get_refund(refund_id), _api.parse_refund)


class WebhookEndpoints:
    """``client.webhook_endpoints``."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        url: str,
        *,
        events: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint (``events``: the types to send; default all). The answer's
        ``secret`` (``whsec_…``) is shown only here: store it to verify deliveries."""
        options = _api.create_webhook_endpoint(url, events, idempotency_key)
        return self._client._request_parsed(options, _api.parse_webhook_endpoint)

    def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[WebhookEndpoint]:
        """One page, newest first; with no ``limit``, every endpoint (a merchant has at most 16)."""
        return self._client._request_parsed(
            _api.list_webhook_endpoints(limit=limit, starting_after=starting_after),
            _api.parse_webhook_endpoints
        )

    def delete(self, webhook_endpoint_id: str) -> None:
        self._client._request(_api.delete_webhook_endpoint(webhook_endpoint_id))


class AsyncWebhookEndpoints:
    """``async_client.webhook_endpoints``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        url: str,
        *,
        events: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        options = _api.create_webhook_endpoint(url, events, idempotency_key)
        return await self._client._request_parsed(options, _api.parse_webhook_endpoint)

    async def list(
        self, *, limit: int | None = None, starting_after: str | None = None
    ) -> Page[WebhookEndpoint]:
        options = _api.list_webhook_endpoints(limit=limit, starting_after=starting_after)
        return await self._client._request_parsed(options, _api.parse_webhook_endpoints)

    async def delete(self, webhook_endpoint_id: str) -> None:
        await self._client._request(_api.delete_webhook_endpoint(webhook_endpoint_id))
