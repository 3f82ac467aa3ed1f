"""The text/event-stream parser, and stream_status() on top of it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

import paygate
from paygate._sse import MAX_LINE, ServerSentEvent, SSEDecoder, SSEError

from .conftest import FakeTime, assert_signed, collect, error_reply, status_json


def feed_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


STREAM = (
    "\ufeff: hello, a comment\n"
    "retry: 2500\n"
    "\n"
    "id: 1\n"
    "event: status\n"
    'data: {"a":\n'
    "data:  1}\n"
    "\n"
    ": keep-alive\n"
    "\n"
    "data:no space\r\n"
    "unknown: ignored\r\n"
    "data\r\n"
    "\r\n"
    "id: 2\r"
    "event: status\r"
    "data: caf\u00e9 \u2603\r"
    "\r"
    "id\n"
    "data: after id reset\n"
    "\n"
    "event: no-data\n"
    "\n"
    "data: unterminated at the end"
).encode()

EXPECTED = [
    ServerSentEvent(event="status", data='{"a":\n 1}', id="1", retry=2500),
    ServerSentEvent(event="message", data="no space\n", id="1", retry=2500),
    ServerSentEvent(event="status", data="caf\u00e9 \u2603", id="2", retry=2500),
    ServerSentEvent(event="message", data="after id reset", id="", retry=2500),
]


def test_parses_fields_comments_and_multiline_data() -> None:
    assert feed_all([STREAM]) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    # Chunks split inside "\r\n", inside UTF-8 sequences, inside field names.
    assert feed_all(split_every(STREAM, size)) == EXPECTED


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert feed_all([b"data: a\r", b"\n", b"\r", b"\n"]) == [
        ServerSentEvent(event="message", data="a", id=None, retry=None)
    ]
    # ...and a lone "\r" then an empty chunk then "\n" still counts once.
    assert feed_all([b"data: b\r", b"", b"\ndata: c\n\n"]) == [
        ServerSentEvent(event="message", data="b\nc", id=None, retry=None)
    ]


def test_id_with_nul_is_ignored_and_bad_retry_is_ignored() -> None:
    events = feed_all([b"id: 7\n\nid: x\x00y\nretry: 12a\ndata: z\n\n"])
    assert events[-1] == ServerSentEvent(event="message", data="z", id="7", retry=None)


def test_a_retry_of_thousands_of_digits_is_a_long_delay_not_a_value_error() -> None:
    # int() refuses a string of over 4,300 digits: a ValueError (not an SSEError) out of
    # feed(), and so out of stream_status. Leading zeros do not make it long.
    events = feed_all([b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"])
    assert events[-1].retry is not None and events[-1].retry >= 10**15
    events = feed_all([b"retry: " + b"0" * 5000 + b"1500\ndata: a\n\n"])
    assert events[-1].retry == 1500


def test_last_event_id_and_retry_are_tracked() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: pi_1:3\nretry: 100\ndata: {}\n\n")
    assert decoder.last_event_id == "pi_1:3"
    assert decoder.retry == 100


# -- stream_status over the client ---------------------------------------------------------


def sse(*statuses: dict[str, Any], comment: bool = True) -> bytes:
    parts = []
    for n, status in enumerate(statuses, 1):
        if comment:
            parts.append(": keep-alive\n\n")
        parts.append(f"id: pi_123:{n}\nevent: status\ndata: {json.dumps(status)}\n\n")
    return "".join(parts).encode()


class DualStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body usable by both the sync and the async client."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def event_stream(chunks: Callable[[], Iterator[bytes]]) -> httpx.Response:
    return httpx.Response(
        200, headers={"Content-Type": "text/event-stream; charset=utf-8"}, stream=DualStream(chunks)
    )


def stream_reply(body: bytes, chunk: int = 7, fail_with: Exception | None = None) -> Any:
    def chunks() -> Iterator[bytes]:
        yield from split_every(body, chunk)
        if fail_with is not None:
            raise fail_with

    return lambda request: event_stream(chunks)


def test_a_long_line_in_small_chunks_costs_linear_time() -> None:
    # 256 KiB of one line, 64 bytes at a time: rescanning what was buffered took ~30 s.
    decoder = SSEDecoder()
    started = time.perf_counter()
    decoder.feed(b"data: ")
    for _ in range(4096):
        assert decoder.feed(b"x" * 64) == []
    events = decoder.feed(b"\n\n")
    assert time.perf_counter() - started < 5
    assert [len(e.data) for e in events] == [4096 * 64]


@pytest.mark.parametrize(
    "stream",
    [
        b"data: " + b"x" * (MAX_LINE + 1),  # no newline, ever
        b"data: " + b"x" * (MAX_LINE + 1) + b"\n",  # one line over the limit
        b"data: xxxxxxxxxx\n" * (MAX_LINE // 10),  # an event that never ends
    ],
)
def test_lines_and_events_over_the_limit_are_refused(stream: bytes) -> None:
    with pytest.raises(SSEError):
        feed_all(split_every(stream, 65536))


async def test_stream_that_never_ends_a_line_is_an_api_error(make_client: Any) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        def chunks() -> Iterator[bytes]:
            yield b"data: "
            while True:
                yield b"x" * 65536

        response = event_stream(chunks)
        response.headers["X-Request-Id"] = "req_sse"
        return response

    client, _ = make_client(endless)
    with pytest.raises(paygate.APIError, match="longer than") as info:
        await collect(client.payment_intents.stream_status("pi_123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_sse"


async def test_stream_yields_until_final(make_client: Any) -> None:
    body = sse(
        status_json("created"),
        status_json("in_progress"),
        status_json("succeeded"),
        status_json("refunded-later-ignored"),
    )
    client, gateway = make_client(stream_reply(body))
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["created", "in_progress", "succeeded"]
    assert all(isinstance(s, paygate.PaymentStatus) for s in statuses)
    request = gateway.requests[0]
    assert request.url.path == "/api/v1/payment/status/stream"
    assert request.url.params["paymentIntentId"] == "pi_123"
    assert request.headers["accept"] == "text/event-stream"
    assert_signed(request)


async def test_stream_ends_when_the_gateway_ends_it(make_client: Any) -> None:
    client, gateway = make_client(stream_reply(sse(status_json("failed"))))
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["failed"]
    assert len(gateway.requests) == 1


async def test_event_data_nested_too_deeply_is_skipped(make_client: Any) -> None:
    # Like any data that is not JSON: skipped, not a RecursionError out of the stream.
    body = b"event: status\ndata: " + b"[" * 100_000 + b"\n\n" + sse(status_json("succeeded"))
    client, _ = make_client(stream_reply(body, chunk=4096))
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["succeeded"]


async def test_stream_body_that_does_not_match_its_content_encoding(make_client: Any) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip",
                     "X-Request-Id": "req_gzip"},
            stream=DualStream(lambda: iter([b"not gzip at all"])),
        )

    client, _ = make_client(broken)
    with pytest.raises(paygate.APIError) as info:
        await collect(client.payment_intents.stream_status("pi_123"))
    assert info.value.http_status == 200 and info.value.request_id == "req_gzip"


async def test_stream_until_custom_statuses(make_client: Any) -> None:
    body = sse(status_json("in_progress"), status_json("failed"), status_json("succeeded"))
    client, _ = make_client(stream_reply(body))
    statuses = await collect(client.payment_intents.stream_status("pi_123", until={"failed"}))
    assert [s.status for s in statuses] == ["in_progress", "failed"]


async def test_stream_reconnects_with_last_event_id_and_skips_repeats(
    make_client: Any, fake_time: FakeTime
) -> None:
    first = stream_reply(
        sse(status_json("created"), status_json("in_progress")),
        fail_with=httpx.RemoteProtocolError("peer closed"),
    )
    # On reconnect the gateway starts with the current status again: not yielded twice.
    second = stream_reply(sse(status_json("in_progress"), status_json("succeeded")))
    client, gateway = make_client(first, second)
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["created", "in_progress", "succeeded"]
    assert "last-event-id" not in gateway.requests[0].headers
    assert gateway.requests[1].headers["last-event-id"] == "pi_123:2"
    assert fake_time.sleeps == [0.5]
    for request in gateway.requests:
        assert_signed(request)


async def test_stream_gives_up_after_max_retries(make_client: Any, fake_time: FakeTime) -> None:
    broken = stream_reply(b": hi\n\n", fail_with=httpx.ReadError("reset"))
    client, gateway = make_client(broken, max_retries=2)
    with pytest.raises(paygate.APIConnectionError):
        await collect(client.payment_intents.stream_status("pi_123"))
    assert len(gateway.requests) == 3


async def test_stream_errors_before_it_starts_are_mapped(make_client: Any) -> None:
    client, _ = make_client(error_reply(404, "resource_missing"))
    with pytest.raises(paygate.InvalidRequestError) as info:
        await collect(client.payment_intents.stream_status("pi_nope"))
    assert info.value.code == "resource_missing"


async def test_error_event_is_raised(make_client: Any) -> None:
    error = {
        "error": {
            "type": "api_error",
            "code": "internal_error",
            "message": "boom",
            "requestId": "req_9",
        }
    }
    body = sse(status_json("in_progress")) + f"event: error\ndata: {json.dumps(error)}\n\n".encode()
    client, _ = make_client(stream_reply(body))
    seen: list[str] = []
    with pytest.raises(paygate.APIError) as info:
        async for status in _aiter(client.payment_intents.stream_status("pi_123")):
            seen.append(status.status)
    assert seen == ["in_progress"]
    assert info.value.code == "internal_error"
    assert info.value.request_id == "req_9"


async def test_not_an_event_stream(make_client: Any) -> None:
    def make(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=status_json("succeeded"))

    client, _ = make_client(make)
    with pytest.raises(paygate.APIError):
        await collect(client.payment_intents.stream_status("pi_123"))


async def test_stream_deadline(make_client: Any, fake_time: FakeTime) -> None:
    def chunks() -> Iterator[bytes]:
        for n, status in enumerate(("created", "in_progress", "in_progress", "in_progress")):
            fake_time.now += 4
            yield sse(status_json(status, updatedAt=f"2023-10-15T14:22:3{n}Z"))

    client, _ = make_client(lambda request: event_stream(chunks))
    with pytest.raises(paygate.WaitTimeoutError) as info:
        await collect(client.payment_intents.stream_status("pi_123", timeout=10))
    assert info.value.last_status is not None
    assert info.value.last_status.status == "in_progress"
    assert fake_time.now == 1012  # stopped at the first event past the deadline


async def test_idle_stream_reopens_without_counting_a_failure(
    make_client: Any, fake_time: FakeTime
) -> None:
    idle = stream_reply(sse(status_json("in_progress")), fail_with=httpx.ReadTimeout("idle"))
    done = stream_reply(sse(status_json("succeeded")))
    client, gateway = make_client(idle, idle, idle, done, max_retries=1)
    statuses = await collect(client.payment_intents.stream_status("pi_123"))
    assert [s.status for s in statuses] == ["in_progress", "succeeded"]
    assert len(gateway.requests) == 4
    assert fake_time.sleeps == []


async def test_closing_the_stream_early_closes_the_response(make_client: Any) -> None:
    streams: list[DualStream] = []

    def make(request: httpx.Request) -> httpx.Response:
        response = event_stream(
            lambda: iter([sse(status_json("created"), status_json("in_progress"))])
        )
        assert isinstance(response.stream, DualStream)
        streams.append(response.stream)
        return response

    client, _ = make_client(make)
    statuses = await collect(client.payment_intents.stream_status("pi_123"), limit=1)
    assert [s.status for s in statuses] == ["created"]
    assert streams and streams[0].closed


async def _aiter(items: Any) -> Any:
    """Iterate a sync or async iterator from async code."""
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
