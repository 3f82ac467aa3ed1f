"""Fixtures for the SDK's unit tests: a scripted fake gateway behind httpx.MockTransport,
sync and async clients on it, and a fake clock (no test really sleeps)."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import paygate

API_KEY = "pk_test_0123456789abcdef"
SIGNING_SECRET = "sk_test_fedcba9876543210"
BASE_URL = "https://gateway.test"

T = TypeVar("T")

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def reply(
    status: int = 200,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    """A fresh response per call (a Response object cannot be sent twice)."""

    def make(request: httpx.Request) -> httpx.Response:
        all_headers = {"X-Request-Id": "req_header"} | (headers or {})
        if content is not None:
            return httpx.Response(status, content=content, headers=all_headers)
        if body is None:
            return httpx.Response(status, headers=all_headers)
        return httpx.Response(status, json=body, headers=all_headers)

    return make


def error_reply(
    status: int,
    code: str,
    *,
    type_: str = "invalid_request_error",
    message: str = "nope",
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    error: dict[str, Any] = {
        "type": type_,
        "code": code,
        "message": message,
        "requestId": "req_body",
    }
    if param is not None:
        error["param"] = param
    return reply(status, {"error": error}, headers=headers)


@dataclass
class Gateway:
    """Answers each request with the next scripted reply (the last one repeats) and keeps
    every request it saw, body read."""

    replies: list[Reply]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        item = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(item, Exception):
            raise item
        if isinstance(item, httpx.Response):
            return item
        return item(request)


@dataclass
class FakeTime:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


ClientFactory = Callable[..., "paygate.Client | paygate.AsyncClient"]


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_client(kind: str, fake_time: FakeTime) -> AsyncIterator[Callable[..., Any]]:
    """``make_client(*replies, **client_kwargs) -> (client, gateway)`` of the ``kind``
    under test, on a fake clock, with jitter pinned to its maximum delay."""
    made: list[paygate.Client | paygate.AsyncClient] = []

    def factory(*replies: Reply, **kwargs: Any) -> tuple[Any, Gateway]:
        gateway = Gateway(list(replies))
        kwargs.setdefault("backoff", paygate.Backoff(random=lambda: 0.0))
        client: paygate.Client | paygate.AsyncClient
        if kind == "sync":
            client = paygate.Client(
                API_KEY,
                SIGNING_SECRET,
                kwargs.pop("base_url", BASE_URL),
                transport=httpx.MockTransport(gateway),
                **kwargs,
            )
            client._sleep = fake_time.sleep  # type: ignore[method-assign,assignment]
        else:
            client = paygate.AsyncClient(
                API_KEY,
                SIGNING_SECRET,
                kwargs.pop("base_url", BASE_URL),
                transport=httpx.MockTransport(gateway),
                **kwargs,
            )
            client._sleep = fake_time.asleep  # type: ignore[method-assign,assignment]
        client._clock = fake_time.clock  # type: ignore[method-assign]
        made.append(client)
        return client, gateway

    yield factory
    for client in made:
        if isinstance(client, paygate.AsyncClient):
            await client.aclose()
        else:
            client.close()


async def resolve(value: T | Awaitable[T]) -> T:
    """Await a coroutine (async client) or pass a value through (sync client)."""
    if inspect.isawaitable(value):
        return await value  # type: ignore[no-any-return]
    return value  # type: ignore[return-value]


async def collect(items: Iterator[T] | AsyncIterator[T], limit: int | None = None) -> list[T]:
    out: list[T] = []
    if isinstance(items, AsyncIterator):
        async for item in items:
            out.append(item)
            if limit is not None and len(out) >= limit:
                await items.aclose()  # type: ignore[attr-defined]
                break
    else:
        for item in items:
            out.append(item)
            if limit is not None and len(out) >= limit:
                items.close()  # type: ignore[attr-defined]
                break
    return out


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def assert_signed(request: httpx.Request, secret: str = SIGNING_SECRET) -> None:
    """The request carries a valid SPEC §3 signature over the exact bytes it sent."""
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    target = request.url.raw_path.decode("ascii")
    assert paygate.verify_signature(
        secret,
        request.method,
        target,
        request.headers["x-request-timestamp"],
        request.headers["x-request-nonce"],
        request.content,
        request.headers["x-signature"],
    ), f"bad signature on {request.method} {target}"


def intent_json(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "paymentIntentId": "pi_123",
        "merchantId": "mer_1",
        "status": "created",
        "amount": 1999,
        "currency": "USD",
        "amountRefunded": 0,
        "productDetails": {"sku": "mug-01", "name": "Mug"},
        "description": "A mug",
        "metadata": {"orderId": "1042"},
        "lastError": None,
        "card": None,
        "createdAt": "2023-10-15T14:22:31Z",
        "updatedAt": "2023-10-15T14:22:31Z",
    }
    data.update(overrides)
    return data


def status_json(status: str = "in_progress", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "paymentIntentId": "pi_123",
        "status": status,
        "amount": 1999,
        "currency": "USD",
        "amountRefunded": 0,
        "lastError": None,
        "updatedAt": "2023-10-15T14:22:31Z",
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="session")
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)
