"""Request-head limits (size, field count, time) on the three real servers: the gateway
(``paygate serve``), the processor simulator and the sample storefront, each a child
process spoken to with raw sockets over loopback."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate_server.procs import ServiceProcess
from paygate_server.simulator.testing import SimulatorProcess
from tests.support.databases import migrated_database_url
from tests.support.eventually import eventually_sync
from tests.support.processes import start_gateway

STOREFRONT_DIR = Path(__file__).resolve().parents[3] / "examples" / "storefront"
HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.5
LIMIT_ENV = {"PAYGATE_HTTP_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),  # size and count: defaults
             "PAYGATE_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)}


@contextlib.contextmanager
def _server(kind: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    if kind == "gateway":
        url = migrated_database_url("sqlite", tmp_path)
        with start_gateway(url, tmp_path, **LIMIT_ENV) as gateway:
            yield gateway
    elif kind == "simulator":
        with SimulatorProcess(tmp_path / "simulator.db", env=LIMIT_ENV) as simulator:
            yield simulator
    else:
        shop = ServiceProcess(
            lambda fd: [sys.executable, "-m", "storefront", "--fd", str(fd), "--log-level", "warning"],
            log_path=tmp_path / "storefront.log",
            # The storefront's package first, then this process's PYTHONPATH: the paygate_server it
            # imports (headerguard) is the one under test, not whichever the venv installed.
            env={**LIMIT_ENV,
                 "PYTHONPATH": os.pathsep.join(p for p in (str(STOREFRONT_DIR), os.environ.get("PYTHONPATH")) if p),
                 "STOREFRONT_API_KEY": "pk_test_x", "STOREFRONT_SIGNING_SECRET": "sk_test_x",
                 "STOREFRONT_DATA_DIR": str(tmp_path / "shop")})
        with shop:
            yield shop


@pytest.fixture(scope="module", params=["gateway", "simulator", "storefront"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with _server(request.param, tmp_path_factory.mktemp(request.param)) as proc:
        yield proc


def _connect(server: ServiceProcess, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=timeout_s)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    chunks: list[bytes] = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _send_all(sock: socket.socket, data: bytes) -> int:
    """Send ``data`` until the server stops taking it; how many bytes went."""
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:sent + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def _request(extra: bytes = b"") -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra + b"\r\n"


def test_normal_heads_pass_including_a_big_cookie_and_98_extra_fields(server: ServiceProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_request(b"Cookie: " + b"c" * 12_000 + b"\r\n"))
        assert _status(_read_until_closed(sock)) == 200
    with _connect(server) as sock:  # 98 + Host + Connection = 100 fields: the limit itself
        sock.sendall(_request(b"".join(b"X-F%d: v\r\n" % i for i in range(98))))
        assert _status(_read_until_closed(sock)) == 200


def test_one_field_too_many_is_431(server: ServiceProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_request(b"".join(b"X-F%d: v\r\n" % i for i in range(99))))
        response = _read_until_closed(sock)
    assert _status(response) == 431
    assert b'"code":"headers_too_large"' in response and b"x-request-id: req_" in response


@pytest.mark.parametrize("head", [
    pytest.param(b"GARBAGE\r\n\r\n", id="request-line"),
    pytest.param(_request(b"Bad Header: v\r\n"), id="header-name"),
    pytest.param(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", id="content-length"),
])
def test_what_is_not_http_is_400_in_the_error_shape_with_a_request_id(server: ServiceProcess, head: bytes) -> None:
    # SPEC §2: every response carries X-Request-Id, every error is {"error": {...}}; uvicorn's
    # own answer was "Invalid HTTP request received." in plain text, without one.
    with _connect(server) as sock:
        sock.sendall(head)
        response = _read_until_closed(sock)
    assert _status(response) == 400, response
    headers, _, body = response.partition(b"\r\n\r\n")
    assert b"\r\nx-request-id: req_" in headers and b"content-type: application/json" in headers
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "parameter_invalid")
    assert headers.split(b"x-request-id: ")[1].split(b"\r\n")[0].decode() == error["requestId"]


def test_a_head_over_16_kib_is_431(server: ServiceProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_request(b"X-Big: " + b"a" * 20_000 + b"\r\n"))
        response = _read_until_closed(sock)
    assert _status(response) == 431


@pytest.mark.parametrize("payload", [
    pytest.param(_request(b"X-Big: " + b"a" * (8 << 20) + b"\r\n"), id="8MB-header"),
    pytest.param(_request(b"".join(b"X-F%d: v\r\n" % i for i in range(20_000))), id="20000-headers"),
])
def test_huge_heads_are_refused_long_before_their_end(server: ServiceProcess, payload: bytes) -> None:
    with _connect(server) as sock:
        sent = _send_all(sock, payload)
        response = _read_until_closed(sock)
    # Refused with a 431 (or, when the client was still sending, just cut off): never served.
    assert _status(response) in (0, 431), response[:200]
    if _status(response) == 0:
        assert sent < len(payload)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_unterminated_64mb_headers_on_4_connections_are_cut_off_and_memory_stays_flat(
        server: ServiceProcess) -> None:
    assert server.pid is not None
    before = _rss_bytes(server.pid)
    chunk = b"a" * 65536
    socks = [_connect(server) for _ in range(4)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = [0] * 4
        open_ = set(range(4))
        while open_ and max(sent) < 64 << 20:  # bounded: 64 MB per connection at most
            for i in list(open_):
                try:
                    sent[i] += socks[i].send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    open_.discard(i)
                except TimeoutError:
                    open_.discard(i)  # the server stopped reading: it has closed or will
        for sock in socks:
            _read_until_closed(sock)
    finally:
        for sock in socks:
            sock.close()
    assert max(sent) < 8 << 20, f"the server read {max(sent)} bytes of one header"
    assert _rss_bytes(server.pid) - before < 16 << 20


def test_a_head_that_never_ends_is_closed_within_the_timeout(server: ServiceProcess) -> None:
    started = time.monotonic()
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # Slow-loris: one more byte every 0.2 s keeps the connection busy but never ends
        # the head; each wait is for the server's close, bounded by the socket timeout.
        sock.settimeout(0.2)
        closed = False
        while time.monotonic() - started < HEAD_TIMEOUT_S + 5:
            try:
                sock.send(b"X")
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    elapsed = time.monotonic() - started
    assert closed, "the server kept a never-ending head open"
    assert HEAD_TIMEOUT_S * 0.9 <= elapsed < HEAD_TIMEOUT_S + 3


def _open_for(sock: socket.socket, limit_s: float, trickle: bool) -> float:
    """How long the server keeps the connection open (at most ``limit_s``), the client
    sending one byte every 0.2 s if ``trickle``; reading whatever it answers meanwhile."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            if trickle:
                sock.send(b" ")
            if sock.recv(65536) == b"":
                break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    return time.monotonic() - started


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
def test_a_body_that_never_ends_is_closed_within_the_timeout(server: ServiceProcess, trickle: bool) -> None:
    """Found against ``paygate serve``: a complete head announcing a body, then the body
    stalled or trickled a byte at a time, held the connection (and the request waiting on
    it) open for as long as the client liked — the slow-loris the head's limit closes,
    one step later. (``/healthz`` does not read the body: the server still waits for it.)"""
    with _connect(server) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{")
        elapsed = _open_for(sock, BODY_TIMEOUT_S + 5, trickle)
    assert BODY_TIMEOUT_S * 0.9 <= elapsed < BODY_TIMEOUT_S + 3, elapsed


def test_a_slow_second_head_on_a_keep_alive_connection_is_closed_too(server: ServiceProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert _status(first) == 200
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(HEAD_TIMEOUT_S + 5)
        rest = _read_until_closed(sock)
    assert _status(rest) == 0 and time.monotonic() - started < HEAD_TIMEOUT_S + 3


def test_an_idle_keep_alive_connection_outlives_a_clients_own_expiry(server: ServiceProcess) -> None:
    """httpx drops an idle pooled connection after 5 s; the server must keep it longer, or a
    request sent as the server closes it meets a reset (a POST that cannot be retried). The
    wait is the condition under test: idle past the client's expiry, then reuse."""
    import httpx

    idle_s = httpx.Limits().keepalive_expiry or 5.0
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length:
            body += sock.recv(65536)
        assert _status(first) == 200
        time.sleep(idle_s + 0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _status(_read_until_closed(sock)) == 200


def test_a_body_cut_off_is_a_client_error_in_the_log_not_a_500_with_a_traceback(tmp_path: Path) -> None:
    """Found against ``paygate serve``: a client closing its connection mid-body (or the
    body timeout closing it) surfaced as Starlette's ``ClientDisconnect`` out of the body
    read — an ``unhandled error`` with its traceback in the log and a ``500`` request line,
    for anyone to cause at will, before any authentication. Now ``400 invalid_json``,
    answered to no one."""
    paths = ["/api/v1/payment/intent", "/checkout/v1/tokens", "/processors/v1/pa_x/webhooks"]
    with _server("gateway", tmp_path) as gateway:
        for path in paths:
            with _connect(gateway) as sock:  # the client leaves
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
        with _connect(gateway) as sock:  # the server's body timeout closes it
            sock.sendall(f"POST {paths[0]} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{".encode())
            _open_for(sock, BODY_TIMEOUT_S + 5, trickle=False)

        def request_lines() -> list[str]:
            return [line for line in gateway.output().splitlines()
                    if "paygate.request request" in line and "route=/healthz" not in line]

        lines = eventually_sync(request_lines, until=lambda found: len(found) >= len(paths) + 1,
                                what="a request line for each body cut off")
        log = gateway.output()
    assert len(lines) == len(paths) + 1, log[-3000:]
    assert all("status=400" in line and "error_code=invalid_json" in line for line in lines), lines
    assert "Traceback" not in log and "unhandled error" not in log and "ClientDisconnect" not in log, log[-3000:]
