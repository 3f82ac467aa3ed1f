"""The simulator connector's transport (paygate_server.http1client) against scripted servers
on 127.0.0.1: keep-alive reuse, a connection the server closed while idle, timeouts,
refused and reset connections, body framings, the pool limit, closing, event loops.

The rule under test is docs/simulator.md's: anything but an explicit answer is UNKNOWN,
never FAILED, and a request is written twice only when that cannot charge twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import orjson
import pytest

from paygate_server.processing.connectors import (
    CardDetails,
    ChargeOutcome,
    ChargeRequest,
    ConnectorError,
    RefundRequest,
    SimulatorConnector,
)
from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxy
from tests.support.http_stub import CLOSE, HANG, RESET, Action, Raw, Reply, Seen, StubServer

O = ChargeOutcome  # noqa: E741 - a one-letter alias keeps the outcome tables readable
REF = "txn_transport"
CARD = CardDetails("4242424242424242", 12, 2030, "123")
REQUEST = ChargeRequest(REF, "pi_1", "mer_1", 1999, "USD", CARD)
APPROVED = orjson.dumps(
    {"reference": REF, "status": "approved", "authCode": "A1B2C3", "declineCode": None}
)
NOT_FOUND = orjson.dumps({"status": "error", "code": "charge_not_found", "retryable": False})
REFUNDED = orjson.dumps({"reference": "re_1", "status": "succeeded"})
DROPPED = (  # what the simulator sends for card …1026 before it aborts
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1024\r\n\r\n"
    b'{"reference":'
)


def _answer(seen: Seen) -> Reply:
    if seen.target.startswith("/v1/charges/"):
        return Reply(200, APPROVED)  # a lookup
    if seen.target == "/v1/refunds":
        return Reply(200, REFUNDED)
    return Reply(200, APPROVED)


def _nth(script: dict[int, Action]) -> Callable[[Seen], Action]:
    """The n-th request (0-based) gets ``script[n]``, the others a normal answer."""
    count = 0

    def handler(seen: Seen) -> Action:
        nonlocal count
        count += 1
        return script.get(count - 1, _answer(seen))

    return handler


def _no_card_data(message: str | None) -> None:
    assert message is not None and "4242424242424242" not in message and "123" not in message


# --- (a) keep-alive connections the server closes -------------------------------------------


async def test_connection_closed_while_idle_then_the_next_charge_gets_a_real_answer() -> None:
    # The first answer is a keep-alive answer after which the server closes the connection.
    handler = _nth({0: Reply(200, APPROVED, close_after=True)})
    async with StubServer(handler) as stub, SimulatorConnector(stub.url) as connector:
        assert (await connector.charge(REQUEST)).outcome is O.APPROVED
        await asyncio.wait_for(stub.wait_ended(0), 5)  # closed by the server while idle
        second = await connector.charge(REQUEST)
    assert second.outcome is O.APPROVED and second.auth_code == "A1B2C3"
    assert [s.connection for s in stub.seen] == [0, 1]


@pytest.mark.parametrize("operation", ["charge", "lookup", "refund"])
async def test_request_that_meets_a_closing_keepalive_connection_is_sent_again(
    operation: str,
) -> None:
    # The race the idle check cannot see: the request is written just as the server closes
    # the reused connection, which ends without a byte of answer. Charges and refunds are
    # idempotent by reference and lookups are reads, so the connector writes the same
    # request once more, on a new connection, and gets the real answer.
    async with (
        StubServer(_nth({1: CLOSE})) as stub,
        SimulatorConnector(stub.url) as connector,
    ):
        assert (await connector.lookup(REF)).outcome is O.APPROVED  # connection 0, now reused
        if operation == "charge":
            outcome = (await connector.charge(REQUEST)).outcome
        elif operation == "lookup":
            outcome = (await connector.lookup(REF)).outcome
        else:
            outcome = (await connector.refund(RefundRequest("re_1", REF, 100, "USD"))).outcome
    assert outcome is O.APPROVED
    first, sent, resent = stub.seen
    assert (sent.connection, resent.connection) == (0, 1)
    assert (resent.method, resent.target, resent.body) == (sent.method, sent.target, sent.body)
    if operation == "charge":
        assert orjson.loads(resent.body)["reference"] == REF  # the processor's idempotency key


@pytest.mark.parametrize("operation", ["charge", "refund"])
async def test_a_resend_that_cannot_connect_is_unknown_not_failed(operation: str) -> None:
    # The processor took the request on the reused connection and went away before
    # answering: the resend finds nothing listening. The first write may have been acted
    # on, so this is not "could not connect: nothing sent" (FAILED, which fails over).
    stub: StubServer
    requests = 0

    def dies_with_the_second_request(seen: Seen) -> Action:
        nonlocal requests
        requests += 1
        if requests == 2:
            stub.stop_listening()
            return CLOSE
        return _answer(seen)

    async with StubServer(dies_with_the_second_request) as stub, SimulatorConnector(stub.url) as connector:
        assert (await connector.lookup(REF)).outcome is O.APPROVED  # connection 0, now reused
        if operation == "charge":
            result = await connector.charge(REQUEST)
        else:
            result = await connector.refund(RefundRequest("re_1", REF, 100, "USD"))
    assert result.outcome is O.UNKNOWN
    assert result.message == "transport error (ReusedConnectionClosed): outcome unknown"
    assert len(stub.seen) == 2


async def test_a_new_connection_that_closes_without_an_answer_is_unknown_and_not_resent() -> None:
    async with StubServer(lambda seen: CLOSE) as stub, SimulatorConnector(stub.url) as connector:
        result = await connector.charge(REQUEST)
    assert result.outcome is O.UNKNOWN
    assert result.message == "transport error (ConnectionLost): outcome unknown"
    assert len(stub.seen) == 1


async def test_a_partial_answer_is_unknown_and_not_resent_even_on_a_reused_connection() -> None:
    # The simulator's "lost answer" (card …1026): head and a few bytes, then the end.
    async with (
        StubServer(_nth({1: Raw(DROPPED, close=True)})) as stub,
        SimulatorConnector(stub.url) as connector,
    ):
        assert (await connector.lookup(REF)).outcome is O.APPROVED
        result = await connector.charge(REQUEST)
        assert result.outcome is O.UNKNOWN
        assert result.message == "transport error (ConnectionLost): outcome unknown"
        assert len(stub.seen) == 2
        assert (await connector.lookup(REF)).outcome is O.APPROVED  # the next call is fine


# --- (b) no answer in time --------------------------------------------------------------------


@pytest.mark.parametrize("reused", [False, True])
async def test_no_answer_is_unknown_timeout_after_the_read_timeout(reused: bool) -> None:
    async with (
        StubServer(_nth({1 if reused else 0: HANG})) as stub,
        SimulatorConnector(stub.url, read_timeout=0.05) as connector,
    ):
        if reused:
            assert (await connector.lookup(REF)).outcome is O.APPROVED
        started = time.monotonic()
        result = await connector.charge(REQUEST)
        elapsed = time.monotonic() - started
        assert result.outcome is O.UNKNOWN
        assert result.message == "timeout (HttpTimeout): outcome unknown"
        assert 0.05 <= elapsed < 5
        assert len(stub.seen) == (2 if reused else 1)  # a timeout is never re-sent
        await asyncio.wait_for(stub.wait_ended(0), 5)  # the timed-out connection is closed
        assert (await connector.lookup(REF)).outcome is O.APPROVED  # on a new connection
    assert stub.seen[-1].connection == 1


async def test_waiting_for_a_free_connection_is_bounded_by_the_read_timeout() -> None:
    async with (
        StubServer(lambda seen: HANG) as stub,
        SimulatorConnector(stub.url, read_timeout=0.1, max_connections=1) as connector,
    ):
        results = await asyncio.gather(connector.charge(REQUEST), connector.lookup(REF))
    for result in results:
        assert result.outcome is O.UNKNOWN
        assert result.message == "timeout (HttpTimeout): outcome unknown"


async def test_a_cancelled_call_never_leaves_its_answer_to_the_next_one() -> None:
    async with (
        StubServer(_nth({0: HANG})) as stub,
        SimulatorConnector(stub.url) as connector,
    ):
        with pytest.raises(TimeoutError):
            # As the processing service's attempt deadline, expiring once the charge is at
            # the processor (a fixed 50 ms could expire before it was sent, on a busy box).
            async with asyncio.timeout(None) as deadline:
                async def expire_once_sent() -> None:
                    await eventually(lambda: stub.seen, what="the charge at the processor")
                    deadline.reschedule(asyncio.get_running_loop().time())

                expiring = asyncio.create_task(expire_once_sent())
                await connector.charge(REQUEST)
        await expiring
        await asyncio.wait_for(stub.wait_ended(0), 5)
        assert (await connector.lookup(REF)).outcome is O.APPROVED
    assert [s.connection for s in stub.seen] == [0, 1]


@pytest.mark.parametrize("reused", [False, True])
async def test_a_charge_given_up_on_in_a_partition_never_reaches_the_processor_after_it(reused: bool) -> None:
    """The reconciler fails a charge the processor says it never received once the in-flight
    grace is over: that holds only if the request cannot arrive later. A blackhole holds
    the bytes as TCP's retransmission queue would and delivers them when it heals, a close
    behind them included; the connection the gateway gave up on must be reset instead."""
    async with (
        StubServer(lambda seen: Reply(404, NOT_FOUND) if seen.target.startswith("/v1/charges/")
                   else Reply(200, APPROVED)) as stub,
        FaultProxy("127.0.0.1", stub.port) as proxy,
        SimulatorConnector(f"http://127.0.0.1:{proxy.port}", read_timeout=0.1) as connector,
    ):
        if reused:  # the charge goes on a keep-alive connection already linked to the server
            assert (await connector.lookup(REF)).outcome is O.NOT_FOUND
        proxy.blackhole()
        assert (await connector.charge(REQUEST)).outcome is O.UNKNOWN
        # The partition outlasts the call: it heals once the gateway's reset has reached the
        # proxy (loopback: at once), and passes on or drops what it held.
        await eventually(lambda: proxy.clients_reset, what="the gateway to reset the connection it gave up on")
        proxy.heal()
        await eventually(lambda: proxy.open_connections == 0, what="the held link to end")
        assert (await connector.lookup(REF)).outcome is O.NOT_FOUND
    assert [s.target for s in stub.seen] == [f"/v1/charges/{REF}"] * (2 if reused else 1)


# A process that sends one request through the proxy, says so, and waits to be killed.
_DYING_SENDER = """
import asyncio, sys
from paygate_server.http1client import HttpConnection

async def main() -> None:
    conn = HttpConnection("127.0.0.1", int(sys.argv[1]))
    await conn.connect()
    answer = asyncio.ensure_future(conn.request("POST", "/v1/charges", body=b"{}", timeout=None))
    await asyncio.sleep(0)  # one turn: the request is written (transport.write sends at once)
    print("sent", flush=True)
    await answer

asyncio.run(main())
"""


async def test_a_request_of_a_gateway_that_dies_never_reaches_the_processor_after_it() -> None:
    """The kernel closes a killed process's sockets; closed gracefully, a request held in a
    partition would still be delivered when it heals, after the restarted gateway's
    reconciler had judged it never received. The gateway's connections linger 0 s: reset."""
    async with (
        StubServer(lambda seen: Reply(200, APPROVED)) as stub,
        FaultProxy("127.0.0.1", stub.port) as proxy,
    ):
        proxy.blackhole()
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _DYING_SENDER, str(proxy.port),
                                                     stdout=asyncio.subprocess.PIPE)
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"sent\n"
        child.kill()
        await child.wait()
        await eventually(lambda: proxy.clients_reset, what="the dead process's connection to be reset")
        proxy.heal()
        await eventually(lambda: proxy.open_connections == 0, what="the held link to end")
    assert stub.seen == []


# --- (c) transport errors -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_sent_nothing_so_operations_failed_and_lookups_are_unknown() -> None:
    async with SimulatorConnector(f"http://127.0.0.1:{_free_port()}", connect_timeout=0.5) as c:
        charged = await c.charge(REQUEST)
        assert charged.outcome is O.FAILED
        assert charged.message == "could not connect (ConnectFailed): nothing sent"
        assert (await c.lookup(REF)).outcome is O.UNKNOWN
        assert (await c.refund(RefundRequest("re_1", REF, 100, "USD"))).outcome is O.FAILED
        with pytest.raises(ConnectorError, match=r"^settlement report: ConnectFailed$"):
            await c.settlement_report(dt.date(2025, 1, 1))


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (CLOSE, "ConnectionLost"),
        (RESET, "ConnectionLost"),
        (Raw(DROPPED, close=True), "ConnectionLost"),
        (Raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "MalformedResponse"),  # not HTTP
        (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}"), "MalformedResponse"),
        (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), "MalformedResponse"),
    ],
    ids=["closed", "reset", "truncated", "not-http", "bad-length", "bad-chunk"],
)
async def test_transport_failures_are_unknown_never_failed(failure: Action, error: str) -> None:
    async with StubServer(lambda seen: failure) as stub, SimulatorConnector(stub.url) as connector:
        charged = await connector.charge(REQUEST)
        assert charged.outcome is O.UNKNOWN and charged.reference == REF
        assert charged.message == f"transport error ({error}): outcome unknown"
        _no_card_data(charged.message)
        assert (await connector.lookup(REF)).outcome is O.UNKNOWN
        refund = await connector.refund(RefundRequest("re_1", REF, 100, "USD"))
        assert refund.outcome is O.UNKNOWN
        with pytest.raises(ConnectorError, match=rf"^settlement report: {error}$"):
            await connector.settlement_report(dt.date(2025, 1, 1))


# --- (d) body framings ------------------------------------------------------------------------


async def test_content_length_chunked_and_close_delimited_answers() -> None:
    close_delimited = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + APPROVED
    handler = _nth({
        0: Reply(200, APPROVED),
        1: Reply(200, APPROVED, chunked=True),
        2: Reply(404, NOT_FOUND, chunked=True),
        3: Raw(close_delimited, close=True),
        4: Reply(200, APPROVED, close=True),
    })
    async with StubServer(handler) as stub, SimulatorConnector(stub.url) as connector:
        assert (await connector.charge(REQUEST)).auth_code == "A1B2C3"
        assert (await connector.charge(REQUEST)).auth_code == "A1B2C3"
        assert (await connector.lookup(REF)).outcome is O.NOT_FOUND
        assert (await connector.charge(REQUEST)).auth_code == "A1B2C3"
        assert (await connector.charge(REQUEST)).auth_code == "A1B2C3"
        assert (await connector.charge(REQUEST)).outcome is O.APPROVED
    # Keep-alive for the first three; then the server ended two connections itself.
    assert [s.connection for s in stub.seen] == [0, 0, 0, 0, 1, 2]


# --- the pool: limit, closing, event loops ---------------------------------------------------


async def test_max_connections_caps_the_pool() -> None:
    async with StubServer(_answer) as stub, SimulatorConnector(stub.url, max_connections=2) as c:
        results = await asyncio.gather(*(c.charge(REQUEST) for _ in range(20)))
        assert {r.outcome for r in results} == {O.APPROVED}
        assert stub.connections == 2


async def test_aclose_closes_the_pooled_connections() -> None:
    async with StubServer(_answer) as stub:
        connector = SimulatorConnector(stub.url)
        await asyncio.gather(*(connector.charge(REQUEST) for _ in range(3)))
        await connector.aclose()
        for index in range(stub.connections):
            await asyncio.wait_for(stub.wait_ended(index), 5)
        after = await connector.charge(REQUEST)
    assert after.outcome is O.UNKNOWN  # a closed connector sends nothing
    assert len(stub.seen) == 3


@contextlib.contextmanager
def _stub_in_a_thread(
    handler: Callable[[Seen], Action],
) -> Iterator[tuple[StubServer, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    stub = StubServer(handler)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(stub.__aenter__(), loop).result(5)
    try:
        yield stub, loop
    finally:
        asyncio.run_coroutine_threadsafe(stub.__aexit__(None, None, None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_connector_used_in_a_new_event_loop_drops_the_old_loops_connections() -> None:
    with _stub_in_a_thread(_answer) as (stub, server_loop):
        connector = SimulatorConnector(stub.url)
        assert asyncio.run(connector.charge(REQUEST)).outcome is O.APPROVED  # loop 1, closed

        async def in_loop_2() -> ChargeOutcome:
            async with connector:
                return (await connector.charge(REQUEST)).outcome

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            assert asyncio.run(in_loop_2()) is O.APPROVED
            gc.collect()
        # Loop 1 is closed, so its transport could only be shut down, not closed through the
        # loop: asyncio frees the descriptor when the transport is collected, with its usual
        # warning. That is the only thing left behind.
        assert all("unclosed" in str(w.message) for w in caught)
        # The idle connection of the closed loop 1 was ended, not reused or kept.
        asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(stub.wait_ended(0), 5), server_loop
        ).result(10)
        asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(stub.wait_ended(1), 5), server_loop
        ).result(10)
    assert [s.connection for s in stub.seen] == [0, 1]
