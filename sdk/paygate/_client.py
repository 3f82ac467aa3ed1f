"""``Client`` and ``AsyncClient``: the send/sleep loop, written once for each.

Everything else (signing, headers, the idempotency key, the retry decision, parsing) is in
``_base_client.BaseClient`` and shared.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from . import _api
from ._base_client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AnswerBudget,
    BaseClient,
    PreparedRequest,
    RequestOptions,
)
from ._jwe import encrypt_card as _encrypt_card
from ._resources import (
    AsyncPaymentIntents,
    AsyncRefunds,
    AsyncWebhookEndpoints,
    PaymentIntents,
    Refunds,
    WebhookEndpoints,
)
from ._retry import Backoff, tls_failures_as_connect_errors

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")

#: How long a fetched JWKS is reused (the gateway serves it with max-age=300).
JWKS_TTL = 300.0


class Client(BaseClient):
    """The synchronous client.

    ::

        with paygate.Client("pk_test_…", "sk_test_…", "http://127.0.0.1:8000") as client:
            intent = client.payment_intents.create(
                amount=1999, currency="USD", product_details={"sku": "mug-01"})

    ``transport`` (an ``httpx.BaseTransport``) or ``http_client`` (an ``httpx.Client``,
    which the SDK then does not close) customise the HTTP layer; ``backoff`` the retry
    delays. Thread-safe as far as ``httpx.Client`` is.
    """

    def __init__(
        self,
        api_key: str,
        signing_secret: str,
        base_url: str,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        http_client: httpx.Client | None = None,
        backoff: Backoff | None = None,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(
            api_key,
            signing_secret,
            base_url,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            user_agent=user_agent,
        )
        if http_client is not None and transport is not None:
            raise ValueError("pass transport= or http_client=, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            transport=transport, timeout=self.timeout, follow_redirects=False
        )
        self._jwks: tuple[float, dict[str, Any]] | None = None
        self._jwks_lock = threading.Lock()
        self.payment_intents = PaymentIntents(self)
        self.refunds = Refunds(self)
        self.webhook_endpoints = WebhookEndpoints(self)

    # Replaced by tests (and by nothing else): the only place the client waits (the clock
    # is BaseClient._clock).
    _sleep = staticmethod(time.sleep)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _send(self, prepared: PreparedRequest) -> httpx.Response:
        """Send with retries. Returns a 2xx response (read, or open if ``prepared.stream``)."""
        attempt = 0
        while True:
            request = self._build_attempt(prepared)
            try:
                response = self._http.send(request, stream=True)
                try:
                    if not (prepared.stream and response.is_success):
                        budget = AnswerBudget(response, self._clock)
                        chunks = [budget.take(chunk) for chunk in response.iter_bytes()]
                        response.close()
                        response = budget.answer(chunks)
                finally:
                    if not (prepared.stream and response.is_success):
                        response.close()
            except httpx.DecodingError as exc:
                delay = self._retry_undecodable(prepared, attempt, response, exc)
            except httpx.TransportError as exc:
                delay = self._retry_or_raise(prepared, attempt, exc=exc)
            else:
                self._log_response(prepared, response)
                if response.is_success:
                    return response
                delay = self._retry_or_raise(prepared, attempt, response=response)
            self._sleep(delay)
            attempt += 1

    def _request(self, options: RequestOptions) -> Any:
        response = self._send(self._prepare(options))
        return self._decode(response)

    def _request_parsed(self, options: RequestOptions, parse: Callable[[Any], T]) -> T:
        response = self._send(self._prepare(options))
        return self._parse(response, parse)

    def card_keys(self, *, refresh: bool = False) -> dict[str, Any]:
        """The gateway's card-encryption JWKS (``GET /checkout/v1/keys``), cached for five
        minutes unless ``refresh``; ``APIError`` if it has no usable key."""
        with self._jwks_lock:
            now = self._clock()
            if refresh or self._jwks is None or now - self._jwks[0] > JWKS_TTL:
                self._jwks = (now, self._request_parsed(_api.card_keys(), _api.parse_jwks))
            return self._jwks[1]

    def encrypt_card(
        self,
        *,
        number: str | int,
        exp_month: int | str,
        exp_year: int | str,
        cvc: str | int,
        name: str | None = None,
    ) -> str:
        """Encrypt a card with the gateway's current key (the JWKS's first), as a JWE for
        ``payment_intents.process(..., encrypted_card=...)``."""
        return _encrypt_card(
            self.card_keys(),
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=cvc,
            name=name,
        )


class AsyncClient(BaseClient):
    """The asynchronous client: the same resources and methods as ``Client``, awaited.

    ::

        async with paygate.AsyncClient("pk_test_…", "sk_test_…", base_url) as client:
            intent = await client.payment_intents.create(
                amount=1999, currency="USD", product_details={"sku": "mug-01"})
    """

    def __init__(
        self,
        api_key: str,
        signing_secret: str,
        base_url: str,
        *,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        backoff: Backoff | None = None,
        user_agent: str | None = None,
    ) -> None:
        super().__init__(
            api_key,
            signing_secret,
            base_url,
            max_retries=max_retries,
            timeout=timeout,
            backoff=backoff,
            user_agent=user_agent,
        )
        if http_client is not None and transport is not None:
            raise ValueError("pass transport= or http_client=, not both")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=self.timeout, follow_redirects=False
        )
        self._jwks: tuple[float, dict[str, Any]] | None = None
        self.payment_intents = AsyncPaymentIntents(self)
        self.refunds = AsyncRefunds(self)
        self.webhook_endpoints = AsyncWebhookEndpoints(self)

    _sleep = staticmethod(asyncio.sleep)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _send(self, prepared: PreparedRequest) -> httpx.Response:
        """Send with retries. Returns a 2xx response (read, or open if ``prepared.stream``)."""
        attempt = 0
        while True:
            request = self._build_attempt(prepared)
            try:
                with tls_failures_as_connect_errors(request):
                    response = await self._http.send(request, stream=True)
                try:
                    if not (prepared.stream and response.is_success):
                        budget = AnswerBudget(response, self._clock)
                        chunks = [budget.take(chunk) async for chunk in response.aiter_bytes()]
                        await response.aclose()
                        response = budget.answer(chunks)
                finally:
                    if not (prepared.stream and response.is_success):
                        await response.aclose()
            except httpx.DecodingError as exc:
                delay = self._retry_undecodable(prepared, attempt, response, exc)
            except httpx.TransportError as exc:
                delay = self._retry_or_raise(prepared, attempt, exc=exc)
            else:
                self._log_response(prepared, response)
                if response.is_success:
                    return response
                delay = self._retry_or_raise(prepared, attempt, response=response)
            await self._sleep(delay)
            attempt += 1

    async def _request(self, options: RequestOptions) -> Any:
        response = await self._send(self._prepare(options))
        return self._decode(response)

    async def _request_parsed(self, options: RequestOptions, parse: Callable[[Any], T]) -> T:
        response = await self._send(self._prepare(options))
        return self._parse(response, parse)

    async def card_keys(self, *, refresh: bool = False) -> dict[str, Any]:
        """The gateway's card-encryption JWKS (``GET /checkout/v1/keys``), cached for five
        minutes unless ``refresh``; ``APIError`` if it has no usable key."""
        now = self._clock()
        if refresh or self._jwks is None or now - self._jwks[0] > JWKS_TTL:
            self._jwks = (now, await self._request_parsed(_api.card_keys(), _api.parse_jwks))
        return self._jwks[1]

    async def encrypt_card(
        self,
        *,
        number: str | int,
        exp_month: int | str,
        exp_year: int | str,
        cvc: str | int,
        name: str | None = None,
    ) -> str:
        """Encrypt a card with the gateway's current key (the JWKS's first), as a JWE for
        ``payment_intents.process(..., encrypted_card=...)``."""
        return _encrypt_card(
            await self.card_keys(),
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=cvc,
            name=name,
        )
