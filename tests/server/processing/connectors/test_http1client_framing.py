"""paygate_server.http1client reading answers from a raw-socket server on 127.0.0.1: each
framing (length, chunks, end of connection), 1xx, codings it does not speak, bounds, a peer
closing mid-body, keep-alive reuse and stale connections, and the connector's transport seam.

Every failure must arrive as its own :class:`HttpError` subclass as soon as the bytes say
so: an answer the client cannot frame must never wait for the read timeout (that turned a
payment ``unknown`` for ``Transfer-Encoding: gzip, chunked``).
"""

from __future__ import annotations

import asyncio
import gzip

import orjson
import pytest

from paygate_server.http1client import (
    ConnectionLost,
    ConnectionPool,
    HttpConnection,
    HttpError,
    MalformedResponse,
    Response,
    ResponseTooLarge,
    ReusedConnectionClosed,
)
from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    SimulatorConnector,
)
from tests.support.http_stub import CLOSE, Action, Raw, Reply, Seen, StubServer

REF = "txn_framing"
BODY = orjson.dumps({"reference": REF, "status": "approved", "authCode": "A1B2C3"})
REQUEST = ChargeRequest(REF, "pi_1", "mer_1", 1999, "USD", CardDetails("4242424242424242", 12,
                                                                      2030, "123"))
# Long enough that a client waiting for it is told apart from one that answered at once.
READ_TIMEOUT = 5.0


def _chunked(body: bytes, size: int = 7) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                      for i in range(0, len(body), size))
    return chunks + b"0\r\n\r\n"


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _one(answer: Action, **options: int) -> Response:
    """Send one POST on a new connection to a server that answers ``answer``."""
    async with StubServer(lambda seen: answer) as stub:
        conn = HttpConnection("127.0.0.1", stub.port, **options)
        try:
            return await conn.request("POST", "/v1/charges", b"", b"{}", READ_TIMEOUT)
        finally:
            conn.close()


# --- framings a parser must read ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        _head("HTTP/1.1 200 OK", f"Content-Length: {len(BODY)}") + BODY,
        _head("HTTP/1.1 200 OK", "content-length:" + str(len(BODY))) + BODY,
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + _chunked(BODY),
        # No space after the colon is valid (RFC 9110 §5.6.3: optional whitespace); the
        # substring search missed it, took the body as close-delimited and waited.
        _head("HTTP/1.1 200 OK", "Transfer-Encoding:chunked") + _chunked(BODY),
        _head("HTTP/1.1 200 OK", "TRANSFER-ENCODING:  Chunked") + _chunked(BODY, 1),
        # Chunk extensions and a trailer.
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked")
        + b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(BODY), BODY),
        # 1xx answers come before the real one and are not it.
        _head("HTTP/1.1 100 Continue")
        + _head("HTTP/1.1 103 Early Hints", "Link: </a>; rel=preload")
        + _head("HTTP/1.1 200 OK", f"Content-Length: {len(BODY)}") + BODY,
    ],
    ids=["length", "length-no-space", "chunked", "chunked-no-space", "chunked-1-byte-chunks",
         "chunk-extension-and-trailer", "1xx-first"],
)
async def test_framings_are_read_and_the_connection_kept(answer: bytes) -> None:
    async with StubServer(lambda seen: Raw(answer)) as stub:
        conn = HttpConnection("127.0.0.1", stub.port)
        try:
            first = await conn.request("POST", "/v1/charges", b"", b"{}", READ_TIMEOUT)
            second = await conn.request("GET", "/v1/charges/x", timeout=READ_TIMEOUT)
        finally:
            conn.close()
    for response in (first, second):
        assert (response.status, response.body, response.close) == (200, BODY, False)
    assert [s.connection for s in stub.seen] == [0, 0]  # one keep-alive connection


@pytest.mark.parametrize(
    "answer",
    [
        _head("HTTP/1.1 200 OK", "Connection: close") + BODY,
        _head("HTTP/1.1 200 OK") + BODY,  # neither length nor chunks: ends with the connection
        _head("HTTP/1.0 200 OK") + BODY,
    ],
    ids=["connection-close", "no-length", "http-1.0"],
)
async def test_a_body_delimited_by_the_end_of_the_connection(answer: bytes) -> None:
    response = await _one(Raw(answer, close=True))
    assert (response.status, response.body, response.close) == (200, BODY, True)


async def test_connection_close_with_a_length_closes_after_the_answer() -> None:
    answer = _head("HTTP/1.1 409 Conflict", "Connection: close", "Content-Length: 2") + b"{}"
    async with StubServer(lambda seen: Raw(answer)) as stub:  # the server keeps it open
        conn = HttpConnection("127.0.0.1", stub.port)
        response = await conn.request("POST", "/v1/charges", b"", b"{}", READ_TIMEOUT)
        assert (response.status, response.body, response.close) == (409, b"{}", True)
        assert not conn.connected
        await asyncio.wait_for(stub.wait_ended(0), 5)


# --- answers it cannot read: an error at once, never the read timeout -------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        # A transfer-coding never asked for: llhttp frames it by its chunks, the body is gzip.
        (_head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked")
         + _chunked(gzip.compress(BODY)), MalformedResponse),
        (_head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip") + gzip.compress(BODY),
         MalformedResponse),
        # A content-coding never asked for (no Accept-Encoding is sent).
        (_head("HTTP/1.1 200 OK", "Content-Encoding: gzip",
               f"Content-Length: {len(gzip.compress(BODY))}") + gzip.compress(BODY),
         MalformedResponse),
        (_head("HTTP/1.1 200 OK", "Content-Length: 5", "Content-Length: 6") + b"{}",
         MalformedResponse),
        (_head("HTTP/1.1 200 OK", "Content-Length: 2", "Transfer-Encoding: chunked") + b"{}",
         MalformedResponse),
        (_head("HTTP/1.1 OK") + b"{}", MalformedResponse),
        (_head("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: upgrade"),
         MalformedResponse),
        # Bounded: a length beyond MAX_BODY, a head that never ends.
        (_head("HTTP/1.1 200 OK", "Content-Length: 1000000000000"), ResponseTooLarge),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 100_000, ResponseTooLarge),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Filler: a\r\n" * 10_000, ResponseTooLarge),
    ],
    ids=["gzip-chunked", "gzip-transfer-coding", "gzip-content-coding", "two-lengths",
         "length-and-chunked", "no-status-code", "101-not-asked", "length-too-large",
         "head-line-too-large", "head-too-large"],
)
async def test_unreadable_answers_fail_at_once(answer: bytes, error: type[HttpError]) -> None:
    # The server keeps the connection open: the client alone must decide.
    with pytest.raises(error) as raised:
        await _one(Raw(answer))
    assert type(raised.value) is error
    assert "4242" not in str(raised.value)


async def test_a_chunked_body_beyond_the_bound_fails_without_reading_it_all() -> None:
    answer = _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + _chunked(b"x" * 5000, 100)
    with pytest.raises(ResponseTooLarge):
        await _one(Raw(answer), max_body=1000)
    response = await _one(Raw(answer), max_body=5000)  # exactly the bound is fine
    assert response.body == b"x" * 5000


@pytest.mark.parametrize(
    "answer",
    [
        _head("HTTP/1.1 200 OK", "Content-Length: 100") + BODY[:10],
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + _chunked(BODY)[:20],
        _head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked") + _chunked(BODY)[:-5],
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
    ids=["length", "chunked-mid-chunk", "chunked-before-last-chunk", "mid-head"],
)
async def test_a_peer_closing_mid_answer_is_connection_lost(answer: bytes) -> None:
    with pytest.raises(ConnectionLost) as raised:
        await _one(Raw(answer, close=True))
    assert type(raised.value) is ConnectionLost


# --- keep-alive and stale connections: never sent twice unless declared idempotent ------------


def _then_close(seen: Seen) -> Action:
    return CLOSE if seen.target == "/second" else Reply(200, BODY)


async def test_a_stale_pooled_connection_is_not_resent_unless_idempotent() -> None:
    async with StubServer(_then_close) as stub:
        pool = ConnectionPool("127.0.0.1", stub.port, 1)
        try:
            assert (await pool.request("POST", "/first", b"", b"{}", READ_TIMEOUT)).body == BODY
            with pytest.raises(ReusedConnectionClosed):
                await pool.request("POST", "/second", b"", b"{}", READ_TIMEOUT)
            assert [s.target for s in stub.seen] == ["/first", "/second"]  # sent once
            assert (await pool.request("POST", "/third", b"", b"{}", READ_TIMEOUT)).body == BODY
        finally:
            pool.close()
    assert [s.connection for s in stub.seen] == [0, 0, 1]


async def test_bytes_after_an_answer_are_never_read_as_the_next_answer() -> None:
    stray = _head("HTTP/1.1 200 OK", f"Content-Length: {len(BODY)}") + BODY
    answers = iter([Raw(stray + stray), Reply(201, b"{}")])
    async with StubServer(lambda seen: next(answers)) as stub:
        conn = HttpConnection("127.0.0.1", stub.port)
        try:
            assert (await conn.request("POST", "/a", b"", b"{}", READ_TIMEOUT)).body == BODY
            second = await conn.request("POST", "/b", b"", b"{}", READ_TIMEOUT)
        finally:
            conn.close()
    assert (second.status, second.body) == (201, b"{}")
    assert [s.connection for s in stub.seen] == [0, 1]


# --- the connector: an unreadable answer is UNKNOWN at once -----------------------------------


async def test_a_gzip_chunked_processor_answer_is_unknown_without_waiting() -> None:
    answer = _head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked") + _chunked(
        gzip.compress(BODY))
    async with StubServer(lambda seen: Raw(answer)) as stub, SimulatorConnector(
        stub.url, read_timeout=READ_TIMEOUT
    ) as connector:
        result = await asyncio.wait_for(connector.charge(REQUEST), READ_TIMEOUT / 2)
    assert result.outcome is ChargeOutcome.UNKNOWN
    assert result.message == "transport error (MalformedResponse): outcome unknown"
    assert len(stub.seen) == 1  # never re-sent


class _ScriptedTransport:
    """The connector's transport seam: answers or raises what the test says, no socket."""

    def __init__(self, *outcomes: Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, str, bool]] = []
        self.closed = False

    async def request(self, method: str, target: str, headers: bytes = b"", body: bytes = b"",
                      timeout: float | None = 30.0, *, idempotent: bool = False) -> Response:
        self.calls.append((method, target, idempotent))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def close(self) -> None:
        self.closed = True


async def test_the_connector_takes_a_transport() -> None:
    transport = _ScriptedTransport(
        Response(200, BODY, False), MalformedResponse("malformed response: x"),
        ResponseTooLarge("response body too large"),
    )
    async with SimulatorConnector("http://processor.invalid/base", transport=transport) as c:
        assert (await c.charge(REQUEST)).auth_code == "A1B2C3"
        unreadable = await c.charge(REQUEST)
        too_large = await c.lookup(REF)
    assert unreadable.message == "transport error (MalformedResponse): outcome unknown"
    assert too_large.message == "transport error (ResponseTooLarge): outcome unknown"
    assert transport.calls == [("POST", "/base/v1/charges", True),
                               ("POST", "/base/v1/charges", True),
                               ("GET", f"/base/v1/charges/{REF}", True)]
    assert transport.closed
