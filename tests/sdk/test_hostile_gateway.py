"""The SDK against a hostile or broken gateway over real sockets (tests/sdk/hostile_server),
sync and async: retries and their keys, answers that are not the contract's, and waits
whose deadline must hold."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import paygate

from .conftest import API_KEY, SIGNING_SECRET, collect, intent_json, resolve, status_json
from .hostile_server import CLOSE, HANG, RESET, Drip, HostileServer, Raw, Seen, answer, json_answer

Handler = Callable[[Seen], Any]


@pytest.fixture
async def hostile(kind: str) -> AsyncIterator[Callable[..., tuple[Any, HostileServer]]]:
    """``hostile(handler, **client_kwargs) -> (client, server)``: a client of the ``kind``
    under test on a real server answering with ``handler``. Retry delays are pinned to
    10 ms (the server's faults are real; the backoff schedule is test_retry's business)."""
    servers: list[HostileServer] = []
    clients: list[Any] = []

    def make(handler: Handler, **kwargs: Any) -> tuple[Any, HostileServer]:
        server = HostileServer(handler).__enter__()
        servers.append(server)
        kwargs.setdefault("backoff", paygate.Backoff(initial_delay=0.01, max_delay=0.01))
        cls = paygate.Client if kind == "sync" else paygate.AsyncClient
        client = cls(API_KEY, SIGNING_SECRET, server.url, **kwargs)
        clients.append(client)
        return client, server

    yield make
    for client in clients:
        if isinstance(client, paygate.AsyncClient):
            await client.aclose()
        else:
            client.close()
    for server in servers:
        server.__exit__(None, None, None)


def sse_event(status: dict[str, Any], event_id: str = "pi_123:1") -> bytes:
    return f"id: {event_id}\nevent: status\ndata: {json.dumps(status)}\n\n".encode()


def chunked_stream_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"X-Request-Id: req_stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- the waits' deadlines -----------------------------------------------------------------


async def test_wait_for_status_deadline_holds_against_a_gateway_that_never_answers(
    hostile: Any,
) -> None:
    # Every attempt had the whole read timeout (wait + 15 s, at least the client's 30 s)
    # and was retried 3 times: a 1 s wait ran for minutes, then raised APITimeoutError.
    client, server = hostile(lambda seen: HANG)
    started = time.monotonic()
    with pytest.raises(paygate.WaitTimeoutError) as info:
        await resolve(client.payment_intents.wait_for_status("pi_123", timeout=1))
    elapsed = time.monotonic() - started
    assert elapsed < 1 + paygate._api.DEADLINE_GRACE + 1.5, elapsed
    assert info.value.last_status is None
    assert 1 <= len(server.seen) <= 2


async def test_stream_status_deadline_holds_against_a_gateway_that_never_answers(
    hostile: Any,
) -> None:
    # Was: 4 attempts of a 1 s read timeout plus backoff, then APITimeoutError.
    client, server = hostile(lambda seen: HANG, backoff=paygate.Backoff())
    started = time.monotonic()
    with pytest.raises(paygate.WaitTimeoutError):
        await collect(client.payment_intents.stream_status("pi_123", timeout=1))
    assert time.monotonic() - started < 1 + paygate._api.DEADLINE_GRACE + 1.0
    assert 1 <= len(server.seen) <= 2


async def test_a_wait_past_its_deadline_does_not_retry_a_failing_gateway(hostile: Any) -> None:
    # A 503 asking for 60 s: the wait's 1 s cannot fit another attempt.
    client, server = hostile(
        lambda seen: Raw(
            answer(503, b"<html>busy</html>", content_type="text/html",
                   headers={"Retry-After": "60"})
        ),
    )
    started = time.monotonic()
    with pytest.raises(paygate.WaitTimeoutError) as info:
        await resolve(client.payment_intents.wait_for_status("pi_123", timeout=1))
    assert time.monotonic() - started < 5
    assert len(server.seen) == 1
    cause = info.value.__cause__
    assert isinstance(cause, paygate.APIError) and cause.http_status == 503


async def test_a_status_stream_repeating_itself_and_dropping_is_reopened_a_bounded_number_of_times(
    hostile: Any,
) -> None:
    # The same status, then the connection drops mid-body, every time: the repeat reset
    # the failure count, so the SDK reconnected forever (295 times in 3 s).
    body = chunked_stream_head() + chunk(sse_event(status_json("in_progress")))
    client, server = hostile(lambda seen: Drip((body,), 0.0), max_retries=2)
    with pytest.raises(paygate.APIConnectionError):
        await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert len(server.seen) == 3


async def test_a_status_stream_making_progress_between_drops_keeps_going(hostile: Any) -> None:
    statuses = iter(["created", "in_progress", "requires_capture"])

    def handler(seen: Seen) -> Drip:
        event = sse_event(status_json(next(statuses)), f"pi_123:{len(server.seen)}")
        return Drip((chunked_stream_head() + chunk(event),), 0.0)

    client, server = hostile(handler, max_retries=1)
    got = await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert [s.status for s in got] == ["created", "in_progress", "requires_capture"]
    assert server.seen[1].headers["last-event-id"] == "pi_123:1"


@pytest.mark.parametrize("event_id", ["pi_123:\u00e9", "pi_123:\x01", "pi_123:\x7f"])
async def test_a_stream_event_id_that_cannot_go_in_a_header_is_not_sent_back(
    hostile: Any, event_id: str
) -> None:
    # The stream's "id:" went back as Last-Event-ID on the reconnection as it came: a
    # non-ASCII one was a UnicodeEncodeError out of stream_status (httpx encodes headers as
    # ASCII), a control character was sent to the gateway in the header.
    statuses = iter(["in_progress", "succeeded"])

    def handler(seen: Seen) -> Drip:
        event = sse_event(status_json(next(statuses)), event_id)
        return Drip((chunked_stream_head() + chunk(event),), 0.0)

    client, server = hostile(handler, max_retries=1)
    got = await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert [s.status for s in got] == ["in_progress", "succeeded"]
    assert "last-event-id" not in server.seen[1].headers


# -- retries and their keys ---------------------------------------------------------------


@pytest.mark.parametrize("fault", [CLOSE, RESET])
async def test_a_post_dropped_after_it_was_sent_is_retried_with_its_key(
    hostile: Any, fault: str
) -> None:
    def handler(seen: Seen) -> Any:
        return fault if len(server.seen) < 3 else Raw(json_answer(201, intent_json()))

    client, server = hostile(handler)
    intent = await resolve(
        client.payment_intents.create(amount=1999, currency="USD", product_details={})
    )
    assert intent.amount == 1999
    keys = {seen.headers["idempotency-key"] for seen in server.seen}
    nonces = {seen.headers["x-request-nonce"] for seen in server.seen}
    bodies = {seen.body for seen in server.seen}
    assert len(server.seen) == 3 and len(keys) == 1 and len(nonces) == 3 and len(bodies) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 409, 413, 422])
async def test_a_refused_post_is_never_retried(hostile: Any, status: int) -> None:
    error = {"error": {"type": "invalid_request_error", "code": "x", "message": "no"}}
    client, server = hostile(lambda seen: Raw(json_answer(status, error)))
    with pytest.raises(paygate.PaygateError) as info:
        await resolve(client.payment_intents.create(amount=1, currency="USD", product_details={}))
    assert info.value.http_status == status and len(server.seen) == 1


@pytest.mark.parametrize(
    "retry_after",
    ["-5", "nan", "inf", "-inf", "1e400", "abc", "Wed, 21 Oct 2015 07:28:00 GMT",
     "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 99999 00:00:00 GMT", "", "1,2"],
)
async def test_hostile_retry_after_values_are_bounded(hostile: Any, retry_after: str) -> None:
    delays: list[float] = []
    client, server = hostile(
        lambda seen: Raw(json_answer(429, {}, headers={"Retry-After": retry_after}))
    )

    def record(delay: float) -> None:
        delays.append(delay)

    async def arecord(delay: float) -> None:
        delays.append(delay)

    client._sleep = arecord if isinstance(client, paygate.AsyncClient) else record
    with pytest.raises(paygate.RateLimitError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.request_id == "req_hostile"
    assert len(server.seen) == 4 and len(delays) == 3
    assert all(0 <= d <= 60 for d in delays), delays


# -- answers that are not the contract's ---------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_a_proxy_html_error_page_is_an_api_error(hostile: Any, status: int) -> None:
    page = b"<html><body><h1>Bad Gateway</h1></body></html>"
    client, server = hostile(
        lambda seen: Raw(answer(status, page, content_type="text/html", request_id="req_proxy"))
    )
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    error = info.value
    assert error.http_status == status and error.request_id == "req_proxy"
    assert error.code is None and error.http_body is not None and "Bad Gateway" in error.http_body
    assert len(server.seen) == 4


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe\xfa not utf-8",
        b"[[[[[[" * 20000,
        b"null",
        b"[]",
        b'"a string"',
        b"1" * 5000,  # past the interpreter's int digits limit
    ],
)
async def test_a_success_that_is_not_json_or_not_an_object_is_an_api_error(
    hostile: Any, body: bytes
) -> None:
    client, _ = hostile(lambda seen: Raw(answer(200, body, request_id="req_bad")))
    with pytest.raises(paygate.APIError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_bad"


@pytest.mark.parametrize(
    "overrides",
    [{"amount": 19.99}, {"amount": "1999"}, {"amountRefunded": "500"}, {"amountReceived": 1e3}],
)
async def test_an_intent_whose_money_is_not_an_integer_is_an_api_error(
    hostile: Any, overrides: dict[str, Any]
) -> None:
    # Was: amount None, amountRefunded 0: a refund the gateway reported read as none.
    client, _ = hostile(lambda seen: Raw(json_answer(200, intent_json(**overrides))))
    with pytest.raises(paygate.APIError, match=next(iter(overrides))) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_hostile"
    assert info.value.http_body is not None


# A proxy's header in UTF-8 (or any byte past 0x7f): rebuilding the read answer from the
# decoded header texts re-encoded them as ASCII, a UnicodeEncodeError out of every call.
_NOT_ASCII = {"Server": "caf\u00e9 \u00ff", "X-Note": "\u00e2\u0080\u0099"}  # bytes e9 ff, e2 80 99


async def test_a_success_with_a_header_that_is_not_ascii_is_read(hostile: Any) -> None:
    client, _ = hostile(lambda seen: Raw(json_answer(200, intent_json(), headers=_NOT_ASCII)))
    intent = await resolve(client.payment_intents.get("pi_123"))
    assert intent.amount == 1999


async def test_an_error_with_a_header_that_is_not_ascii_is_mapped(hostile: Any) -> None:
    body = {"error": {"type": "invalid_request_error", "code": "resource_missing"}}
    client, _ = hostile(lambda seen: Raw(json_answer(404, body, headers=_NOT_ASCII)))
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert (info.value.http_status, info.value.code, info.value.request_id) == (
        404, "resource_missing", "req_hostile")


async def test_unknown_fields_and_statuses_are_tolerated(hostile: Any) -> None:
    body = intent_json(status="partially_paid", newField={"x": 1}, amountCapturable=None)
    client, _ = hostile(lambda seen: Raw(json_answer(200, body)))
    intent = await resolve(client.payment_intents.get("pi_123"))
    assert intent.status == "partially_paid" and intent.raw["newField"] == {"x": 1}
    assert intent.amount == 1999 and intent.amount_capturable is None


async def test_an_error_body_that_is_not_utf8_keeps_its_status_and_request_id(
    hostile: Any,
) -> None:
    client, _ = hostile(
        lambda seen: Raw(answer(404, b"\xff\xfe", content_type="text/plain; charset=bogus"))
    )
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 404 and info.value.request_id == "req_hostile"


@pytest.mark.parametrize("charset", ["utf-16", "utf-32"])
async def test_an_error_body_not_in_its_declared_charset_keeps_its_status_and_request_id(
    hostile: Any, charset: str
) -> None:
    # Was: UnicodeError ("UTF-16 stream does not start with BOM") out of the client.
    client, _ = hostile(
        lambda seen: Raw(answer(409, b"null", content_type=f"application/json; charset={charset}"))
    )
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.http_status == 409 and info.value.request_id == "req_hostile"


async def test_a_status_stream_of_garbage_events_then_close_ends(hostile: Any) -> None:
    garbage = (
        b"data: {not json\n\n" b"event: status\ndata: [1,2]\n\n" b"data: {\"no\": \"status\"}\n\n"
        b":\n\n" b"retry: -1\n\n" b"id: \x00\n\n"
    )
    client, server = hostile(lambda seen: Drip((chunked_stream_head(), chunk(garbage)), 0.0))
    # Garbage is skipped; the connection then breaks mid-body and is reopened up to
    # max_retries times before the error.
    with pytest.raises(paygate.APIConnectionError):
        await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert len(server.seen) == 4


async def test_a_stream_closed_cleanly_without_events_ends_quietly(hostile: Any) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    )
    client, server = hostile(lambda seen: Raw(head))
    assert await collect(client.payment_intents.stream_status("pi_123", timeout=30)) == []
    assert len(server.seen) == 1



async def test_an_error_event_carries_the_streams_request_id(hostile: Any) -> None:
    # Was: request_id None when the event's body had no requestId of its own.
    error = {"error": {"type": "api_error", "code": "internal_error", "message": "boom"}}
    events = sse_event(status_json("in_progress")) + b"event: error\ndata: " + json.dumps(
        error
    ).encode() + b"\n\n"
    client, _ = hostile(lambda seen: Drip((chunked_stream_head(), chunk(events)), 0.0))
    with pytest.raises(paygate.APIError) as info:
        await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert info.value.code == "internal_error" and info.value.request_id == "req_stream"


async def test_a_status_event_whose_amount_is_not_an_integer_is_an_api_error_of_the_stream(
    hostile: Any,
) -> None:
    # Was: an APIError with no status and no request id.
    events = sse_event(status_json("succeeded", amountRefunded="500"))
    client, _ = hostile(lambda seen: Drip((chunked_stream_head(), chunk(events)), 0.0))
    with pytest.raises(paygate.APIError, match="amountRefunded") as info:
        await collect(client.payment_intents.stream_status("pi_123", timeout=30))
    assert info.value.http_status == 200 and info.value.request_id == "req_stream"


# -- answers too large or too slow ----------------------------------------------------------

OVER = paygate._base_client.MAX_ANSWER_BYTES + 1


def chunked_answer(status: int, chunks: list[bytes], **headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
            "X-Request-Id: req_big", "Transfer-Encoding: chunked"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + b"".join(map(chunk, chunks)) + b"0\r\n\r\n"


def gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    zeros = b"0" * (1 << 20)
    data = b"".join(compressor.compress(zeros) for _ in range(OVER // len(zeros) + 1))
    return data + compressor.flush()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: answer(200, b" " * OVER, request_id="req_big"), id="declared"),
        pytest.param(lambda: chunked_answer(200, [b" " * (1 << 20)] * (OVER >> 20) + [b"  "]),
                     id="chunked"),
        pytest.param(lambda: chunked_answer(200, [gzip_bomb()], **{"Content-Encoding": "gzip"}),
                     id="gzip-bomb"),
        pytest.param(lambda: chunked_answer(503, [b" " * (1 << 20)] * (OVER >> 20) + [b"  "]),
                     id="error-page"),
    ],
)
async def test_an_answer_over_the_size_limit_is_an_api_error(
    hostile: Any, make: Callable[[], bytes]
) -> None:
    # Was: read whole into memory, whatever its size (a 1 MiB gzip body became 33 MiB).
    data = make()
    client, server = hostile(lambda seen: Raw(data, close=True))
    with pytest.raises(paygate.APIError, match="over") as info:
        await resolve(client.payment_intents.get("pi_123"))
    assert info.value.request_id == "req_big" and len(server.seen) == 1


async def test_an_answer_dripped_slower_than_the_read_timeout_times_out(hostile: Any) -> None:
    # Was: each byte came well inside the 0.5 s read timeout, so the answer was waited for
    # as long as the peer kept dripping (here 345 bytes x 0.1 s; a hostile peer: forever).
    body = json.dumps(intent_json()).encode()
    head = answer(200, body)[: -len(body)]
    drip = Drip((head, *(body[i : i + 1] for i in range(len(body)))), gap=0.1)
    client, server = hostile(lambda seen: drip, timeout=0.5, max_retries=1)
    started = time.monotonic()
    with pytest.raises(paygate.APITimeoutError):
        await resolve(client.payment_intents.get("pi_123"))
    assert time.monotonic() - started < 3
    assert len(server.seen) == 2


async def test_an_error_message_cannot_forge_log_lines_or_fill_them(hostile: Any) -> None:
    # Was: the gateway's message went into str(error) as sent, line ends and all.
    forged = "nope\n2026-12-06 10:00:00 INFO shop: order 1042 paid\r\x1b[2J" + "x" * 10_000
    error = {"error": {"type": "invalid_request_error", "code": "bad\ncode",
                       "message": forged, "requestId": "req_1\u2028req_2"}}
    client, _ = hostile(lambda seen: Raw(json_answer(400, error)))
    with pytest.raises(paygate.InvalidRequestError) as info:
        await resolve(client.payment_intents.get("pi_123"))
    text = str(info.value)
    assert not any(ch in text for ch in "\n\r\x1b\u2028"), text[:200]
    assert info.value.message.startswith("nope 2026-12-06") and len(info.value.message) <= 500
    assert info.value.code == "bad code" and info.value.request_id == "req_1 req_2"
    assert info.value.http_body is not None and "nope\\n2026-12-06" in info.value.http_body


# -- another intent's status ---------------------------------------------------------------

OTHER = status_json("succeeded", paymentIntentId="pi_other")


@pytest.mark.parametrize("call", ["status", "wait_for_status"])
async def test_another_intents_status_never_passes_for_this_one(hostile: Any, call: str) -> None:
    # A cache that keys on the path and ignores the query string answers every
    # status?paymentIntentId=… with the first one it saw. Was: wait_for_status("pi_123")
    # returned pi_other's "succeeded".
    client, _ = hostile(lambda seen: Raw(json_answer(200, OTHER)))
    method = getattr(client.payment_intents, call)
    with pytest.raises(paygate.APIError, match="pi_other") as info:
        await resolve(method("pi_123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_hostile"


async def test_another_intents_status_on_the_stream_is_an_api_error(hostile: Any) -> None:
    events = sse_event(status_json("in_progress")) + sse_event(OTHER, "pi_other:9")
    client, _ = hostile(lambda seen: Drip((chunked_stream_head(), chunk(events)), 0.0))
    seen: list[str] = []
    with pytest.raises(paygate.APIError, match="pi_other") as info:
        async for status in _statuses(client.payment_intents.stream_status("pi_123", timeout=30)):
            seen.append(status.status)
    assert seen == ["in_progress"] and info.value.request_id == "req_stream"


async def _statuses(items: Any) -> AsyncIterator[Any]:
    if isinstance(items, AsyncIterator):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_a_body_that_json_cannot_hold_is_refused_before_sending(
    hostile: Any, value: float
) -> None:
    # Was: sent as {"productDetails":{"weight":NaN}}, which no JSON parser accepts.
    client, server = hostile(lambda seen: Raw(json_answer(201, intent_json())))
    with pytest.raises(ValueError, match="JSON"):
        await resolve(client.payment_intents.create(
            amount=1999, currency="USD", product_details={"weight": value}))
    assert server.seen == []
