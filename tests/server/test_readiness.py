"""``GET /readyz`` (paygate_server/readiness.py, storage/ping.py).

The check's own rules against a probe the test controls (bounded, one probe at a time,
cached, never raising); then the gateway and the console apps on both databases, and a
PostgreSQL reached through a fault proxy that blackholes or refuses: 503 with Retry-After
within the bound, ``/healthz`` unchanged, 200 again once the path is back."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from paygate_server.readiness import NOT_READY, Readiness
from paygate_server.storage.availability import RETRY_AFTER_S
from tests.server.console.conftest import InProcessConsole, running_console
from tests.support.app import InProcessGateway, running_gateway
from tests.support.app import test_settings as make_settings
from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxy

BOUND_S = 0.5
# What a check may take beyond its bound on a loaded 2-core machine (scheduling only: the
# check does not wait for anything past the bound).
SLACK_S = 0.5


class Probe:
    """A database stand-in: answers, fails or hangs as the test says; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None  # set: a hanging probe, until the event is
        self.error: Exception | None = None

    async def __call__(self) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _timed(readiness: Readiness) -> tuple[bool, float]:
    started = time.monotonic()
    ready = await readiness.check()
    return ready, time.monotonic() - started


async def test_a_burst_of_checks_costs_one_probe_and_the_outcome_is_cached() -> None:
    probe, clock = Probe(), Clock()
    readiness = Readiness(probe, timeout_s=BOUND_S, cache_s=0.5, clock=clock)
    assert await asyncio.gather(*(readiness.check() for _ in range(20))) == [True] * 20
    assert probe.calls == 1
    clock.now += 0.4
    assert await readiness.check() and probe.calls == 1  # still within cache_s
    clock.now += 0.2
    probe.error = ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)")
    assert await readiness.check() is False and probe.calls == 2  # past it: asked again, not ready
    assert await readiness.check() is False and probe.calls == 2  # the failure is cached too
    probe.error = None
    clock.now += 0.6
    assert await readiness.check() and probe.calls == 3


async def test_a_hanging_probe_answers_not_ready_within_the_bound_and_is_never_doubled(
        caplog: pytest.LogCaptureFixture) -> None:
    probe, clock = Probe(), Clock()
    # The real clock paces the waits; the fake one says how old the outcome is.
    readiness = Readiness(probe, timeout_s=BOUND_S, cache_s=0.5, clock=clock)
    assert await readiness.check()  # ready at first
    clock.now += 1.0
    probe.gate = asyncio.Event()
    results = await asyncio.gather(*(_timed(readiness) for _ in range(5)))
    assert [ready for ready, _ in results] == [False] * 5
    assert max(seconds for _, seconds in results) < BOUND_S + SLACK_S, results
    clock.now += 1.0  # past cache_s: the next check would probe again — if none ran
    ready, seconds = await _timed(readiness)
    # The second probe still hangs: no third is started beside it, and the check does not
    # wait for it again (its bound is long gone).
    assert (ready, probe.calls) == (False, 2) and seconds < SLACK_S
    probe.gate.set()  # the database answers at last: the hanging probe ends ready
    assert await eventually(readiness.check, until=bool, timeout=5)
    assert probe.calls == 2
    # One line when it stopped answering, one when it answered again — not one per check.
    lines = [r.getMessage() for r in caplog.records if r.name == "paygate.readiness"]
    assert lines == [f"not ready: the database did not answer (no answer within {BOUND_S:g}s)",
                     "ready: the database answers again"], lines


async def test_a_failing_probe_is_not_ready_and_names_no_address(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe()
    probe.error = OSError("Multiple exceptions: [Errno 111] Connect call failed ('10.9.8.7', 5432)")
    readiness = Readiness(probe, timeout_s=BOUND_S, cache_s=0.0)
    for _ in range(3):
        assert await readiness.check() is False
    assert probe.calls == 3  # cache_s 0: every check asks
    text = caplog.text
    assert "10.9.8.7" not in text and text.count("not ready") == 1, text


async def test_close_stops_a_running_probe() -> None:
    probe = Probe()
    probe.gate = asyncio.Event()
    readiness = Readiness(probe, timeout_s=0.05, cache_s=0.0)
    assert await readiness.check() is False
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "readiness probe")
    await readiness.close()
    assert task.cancelled()


async def test_the_gateway_and_the_console_are_ready(gw: InProcessGateway, database_url: str,
                                                     tmp_path: Path) -> None:
    r = await gw.http.get("/readyz")  # unauthenticated, like /healthz
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
    assert r.headers["cache-control"] == "no-store" and r.headers["x-request-id"].startswith("req_")
    health = await gw.http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    async with running_console(make_settings(database_url, tmp_path / "console")) as con:
        r = await con.http.get("/readyz")
        assert (r.status_code, r.json()) == (200, {"status": "ready"})
        assert r.headers["x-frame-options"] == "DENY"  # the console's headers, as on every answer


@pytest.fixture
async def proxied_gateway(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[FaultProxy, InProcessGateway,
                                                                                   InProcessConsole]]:
    """The gateway and the console in-process on a PostgreSQL they reach only through a
    fault proxy."""
    if not database_url.startswith("postgres"):
        pytest.skip("a database server the network can cut off (PostgreSQL)")
    url = make_url(database_url)
    async with FaultProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = make_settings(through, tmp_path, ready_timeout_s=BOUND_S, ready_cache_s=0.2, db_pool_size=4,
                                 db_pool_timeout_s=1.0, db_connect_timeout_s=1.0, db_command_timeout_s=1.0)
        async with running_gateway(settings) as gw, running_console(settings) as con:
            yield proxy, gw, con


@pytest.mark.parametrize("fault", ["blackhole", "refuse"])
async def test_not_ready_while_the_database_is_cut_off_then_ready_again(
        proxied_gateway: tuple[FaultProxy, InProcessGateway, InProcessConsole], fault: str) -> None:
    proxy, gw, con = proxied_gateway
    assert (await gw.http.get("/readyz")).status_code == 200  # a pooled connection, made before the fault
    assert (await con.http.get("/readyz")).status_code == 200
    if fault == "blackhole":
        proxy.blackhole()
    else:
        proxy.refuse = True
        proxy.reset_all()  # the pooled connections die; new ones are refused

    async def timed_check(http: httpx.AsyncClient = gw.http) -> tuple[int, float, httpx.Response]:
        started = time.monotonic()
        r = await http.get("/readyz")
        seconds = time.monotonic() - started
        assert seconds < BOUND_S + SLACK_S, f"answered {r.status_code} in {seconds:.2f}s"
        return r.status_code, seconds, r

    # Within ready_cache_s of the last probe a check may still answer the 200 it saw.
    await eventually(timed_check, until=lambda answer: answer[0] == 503, timeout=5, interval=0.05,
                     what="/readyz to answer 503")
    for _ in range(3):  # the cached outcome, then a new probe's
        status, _, r = await timed_check()
        assert status == 503, r.text
        assert r.headers["retry-after"] == str(RETRY_AFTER_S)
        error = r.json()["error"]
        assert (error["code"], error["type"], error["message"]) == ("service_unavailable", "api_error", NOT_READY)
        assert error["requestId"] == r.headers["x-request-id"]
        health = await gw.http.get("/healthz")  # liveness does not look at the database
        assert health.status_code == 200
    # The console's own check, on its own pool, sees the same database.
    status, _, r = await eventually(lambda: timed_check(con.http), until=lambda answer: answer[0] == 503,
                                    timeout=5, interval=0.05, what="the console's /readyz to answer 503")
    assert r.headers["retry-after"] == str(RETRY_AFTER_S) and r.json()["error"]["code"] == "service_unavailable"
    assert (await con.http.get("/healthz")).status_code == 200

    proxy.heal()
    healed_at = time.monotonic()
    r = await eventually(lambda: gw.http.get("/readyz"), until=lambda r: r.status_code == 200, timeout=15,
                         interval=0.1, what="/readyz to answer 200 once the database is back")
    assert r.json() == {"status": "ready"}
    await eventually(lambda: con.http.get("/readyz"), until=lambda r: r.status_code == 200, timeout=15,
                     interval=0.1, what="the console's /readyz to answer 200 again")
    print(f"{fault}: ready again {time.monotonic() - healed_at:.2f}s after the path healed")
    # And the pool serves requests again: the probe left no broken connection behind.
    merchant = await gw.new_merchant()
    assert (await merchant.create_intent())["status"] == "created"
