"""Unit tests for the bench's arithmetic: histogram percentiles, CPU accounting, /proc
parsing, the HTTP/1.1 response parser, and how work is split between processes."""
from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from paygate_server.bench.cpu import (
    CLOCK_TICKS,
    CpuGroup,
    cpu_seconds_between,
    cpu_split_between,
    descendants,
    parse_stat,
    pids_listening_on,
)
from paygate_server.bench.runner import split
from paygate_server.bench.stats import LatencyHistogram
from paygate_server.http1client import HttpConnection, HttpError
from paygate_server.procs import ServiceProcess


def exact_percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of raw values: the reference the histogram is tested against."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(p / 100.0 * len(ordered))) - 1]


def test_histogram_percentiles_are_within_one_percent_of_exact() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-5.0, 1.2) for _ in range(20_000)] + [2.5]  # ~7 ms median, one outlier
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    for p in (1.0, 50.0, 90.0, 95.0, 99.0, 99.9):
        exact = exact_percentile(values, p)
        assert exact is not None
        assert hist.percentile(p) == pytest.approx(exact, rel=0.01)
    assert hist.percentile(100.0) == max(values)
    assert hist.count == len(values)
    assert hist.mean_s == pytest.approx(sum(values) / len(values))


def test_histogram_merge_equals_one_histogram_and_survives_the_wire() -> None:
    rng = random.Random(3)
    parts = [[rng.uniform(0.001, 0.2) for _ in range(1000)] for _ in range(3)]
    merged = LatencyHistogram()
    for part in parts:
        h = LatencyHistogram()
        for v in part:
            h.record(v)
        merged.merge(LatencyHistogram.from_wire(h.to_wire()))
    whole = LatencyHistogram()
    for v in (v for part in parts for v in part):
        whole.record(v)
    assert merged.counts == whole.counts and merged.count == 3000
    assert merged.percentile(99.0) == whole.percentile(99.0)
    assert (merged.min_s, merged.max_s) == (whole.min_s, whole.max_s)


def test_histogram_edge_cases() -> None:
    empty = LatencyHistogram()
    assert empty.percentile(50.0) is None and empty.summary_ms()["p99Ms"] is None
    assert LatencyHistogram.from_wire(empty.to_wire()).count == 0
    one = LatencyHistogram()
    one.record(0.0123)
    # A single value: every percentile is that value (clamped to the recorded min/max).
    assert one.summary_ms() == {"count": 1, "meanMs": 12.3, "p50Ms": 12.3, "p95Ms": 12.3, "p99Ms": 12.3, "maxMs": 12.3}
    with pytest.raises(ValueError):
        one.percentile(0.0)


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # A command name with spaces and a ')' must not shift the fields.
    line = ("4242 (uvicorn: a) b) S 4000 4242 4242 0 -1 4194560 100 0 0 0 "
            "150 30 7 3 20 0 5 0 987654 1000000 200 18446744073709551615")
    stat = parse_stat(line)
    assert (stat.pid, stat.ppid, stat.utime, stat.stime, stat.cutime, stat.cstime, stat.starttime) == \
        (4242, 4000, 150, 30, 7, 3, 987654)
    assert stat.user_sys == (157, 33)


def test_cpu_window_accounts_for_started_exited_and_reaped_processes() -> None:
    t = CLOCK_TICKS
    # (user, system) ticks per (pid, starttime).
    start = {(10, 1): (5 * t, 0), (11, 2): (2 * t, 0), (12, 3): (t, 0)}
    # 10 (the parent) ran 1 s itself and reaped 12, which had used 1.5 s in all (0.5 s in the
    # window): its cutime grew by 1.5 s. 11 ran 2 s more, half of it in the kernel; 13
    # started in the window and ran 0.25 s.
    end = {(10, 1): (int(5 * t + 1 * t + 1.5 * t), 0), (11, 2): (3 * t, t), (13, 9): (t // 4, 0)}
    assert cpu_seconds_between(start, end) == pytest.approx(1 + 0.5 + 2 + 0.25, abs=1 / t)
    user, system = cpu_split_between(start, end)
    assert (user, system) == (pytest.approx(2.75, abs=1 / t), pytest.approx(1.0))
    assert cpu_seconds_between(end, start) == 0.0  # never negative


def test_descendants_walks_the_tree() -> None:
    stats = [parse_stat(f"{pid} (x) S {ppid} 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 0 {pid} 0 0")
             for pid, ppid in [(1, 0), (100, 1), (101, 100), (102, 100), (103, 101), (200, 1)]]
    assert descendants([100], stats) == {100, 101, 102, 103}


def test_cpu_group_sees_this_process_and_a_busy_child() -> None:
    group = CpuGroup([os.getpid()])
    before = group.sample()
    # Burn 0.2 s of this process's CPU time (not of the wall clock: on a loaded machine the
    # process may get a small share of it), with a generous wall deadline.
    start, deadline = os.times(), os.times().elapsed + 60
    while (t := os.times()).user + t.system - start.user - start.system < 0.2 and t.elapsed < deadline:
        sum(range(1000))
    after = group.sample()
    assert os.getpid() in group.pids
    assert 0.15 <= cpu_seconds_between(before, after) <= 1.0


async def test_pids_listening_on_finds_the_server_process() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert os.getpid() in pids_listening_on(port)
    finally:
        server.close()
        await server.wait_closed()


def test_pids_listening_on_skips_a_launcher_that_prebound_the_socket() -> None:
    """Like `paygate demo`: the parent binds two services' sockets and hands one to a
    child; the port belongs to the child, not to the launcher (and its other children)."""
    a, b = socket.socket(), socket.socket()
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.listen()
    child = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(a.fileno(),))
    try:
        # Until the child has exec'd it is a copy of this process (same command line), and
        # the launcher rule cannot tell them apart: wait for it to be itself.
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        assert pids_listening_on(a.getsockname()[1]) == [child.pid]
        assert pids_listening_on(b.getsockname()[1]) == [os.getpid()]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
        a.close()
        b.close()


async def test_http1_client_reads_lengths_chunks_and_closes() -> None:
    answers = [
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=1\r\nefg\r\n0\r\n\r\n",
        b"HTTP/1.1 409 Conflict\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ]
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while answers:
                head = await reader.readuntil(b"\r\n\r\n")
                fields = head.lower().split(b"content-length: ")  # none on a GET without a body
                length = int(fields[1].split(b"\r\n")[0]) if len(fields) > 1 else 0
                seen.append(head + await reader.readexactly(length))
                answer = answers.pop(0)
                for i in range(0, len(answer), 7):  # in pieces: the parser must wait for the rest
                    writer.write(answer[i:i + 7])
                    await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = HttpConnection("127.0.0.1", port)
    try:
        r1 = await conn.request("POST", "/a", b"X-Test: 1\r\n", b'{"x":1}')
        r2 = await conn.request("GET", "/b")
        r3 = await conn.request("GET", "/c")
        assert (r1.status, r1.body) == (201, b'{"ok":true}')
        assert (r2.status, r2.body) == (200, b"abcdefg")
        assert (r3.status, r3.body, r3.close) == (409, b"{}", True)
        assert not conn.connected  # the server said close
        assert seen[0].startswith(b"POST /a HTTP/1.1\r\nHost: 127.0.0.1:") and b"X-Test: 1\r\n" in seen[0]
        assert seen[0].endswith(b'\r\n\r\n{"x":1}')
        assert b"content-length" not in seen[1].lower()
        with pytest.raises(HttpError):
            await conn.request("GET", "/d", timeout=2.0)  # the server is done: reset or closed
    finally:
        conn.close()
        server.close()
        await server.wait_closed()


def test_split_spreads_work_evenly() -> None:
    assert split(10, 3) == [4, 3, 3]
    assert split(2, 4) == [1, 1, 0, 0]
    assert sum(split(1001, 7)) == 1001


def test_recorder_counts_a_single_request_flow_once() -> None:
    from paygate_server.bench.worker import Recorder

    rec = Recorder(window_start=0.0)
    rec.request("status", 1.0, 1.002, None)
    rec.flow(None, 1.0, 1.002, "created")  # the status scenario: the flow is that one request
    rec.request("create", 2.0, 2.001, None)
    rec.request("process", 2.001, 2.01, None)
    rec.flow("payment", 2.0, 2.02, "succeeded")
    assert rec.payments == 2
    assert {name: h.count for name, h in rec.histograms.items()} == {
        "status": 1, "create": 1, "process": 1, "payment": 1}


def test_service_process_sets_tcp_nodelay_on_its_listening_socket(tmp_path: Path) -> None:
    # uvicorn never sets it on what it accepts from an inherited descriptor: without it a
    # response written in two segments waits ~40 ms for the delayed ACK, and every bench
    # latency figure (and the gateway's processor calls to the simulator) would include it.
    service = ServiceProcess(lambda fd: ["true"], log_path=tmp_path / "service.log")
    try:
        assert service._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        service.close()


async def test_bench_requests_time_out_after_request_timeout() -> None:
    # `paygate bench --request-timeout` reached WorkerConfig but no request: every call
    # waited the client's default 30 s on a gateway that never answered.
    from paygate_server.bench.worker import Driver, Recorder, Signer, WorkerConfig

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    creds = {"merchantId": "mer_x", "apiKey": "pk_test_x", "signingSecret": "sk_test_x"}
    cfg = WorkerConfig(index=0, scenario="create", host="127.0.0.1", port=port, merchants=[creds], jwes=[],
                       request_timeout_s=0.2)
    driver = Driver(cfg, Recorder(window_start=0.0))
    conn = HttpConnection("127.0.0.1", port)
    try:
        async with asyncio.timeout(10):
            assert await driver.create(conn.request, Signer(creds, True)) is None
        assert driver.rec.errors == {"create: transport timeout": 1}
    finally:
        conn.close()
        server.close()
        await server.wait_closed()
