"""``GET /readyz`` on a real gateway process (``paygate serve``) whose PostgreSQL — a server
of the test's own — goes away twice: its path blackholed (a fault proxy in between), then
the server itself stopped. Each time /readyz answers ``503`` with ``Retry-After`` within its
bound while ``/healthz`` stays ``200``, and ``200`` again once the database is back, with
no restart of the gateway. The in-process tests are tests/server/test_readiness.py.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from paygate_server.storage.availability import RETRY_AFTER_S
from tests.e2e.test_database_faults import DB_TIMEOUTS
from tests.support.databases import migrate
from tests.support.eventually import eventually
from tests.support.fault_proxy import FaultProxyThread
from tests.support.private_postgres import PrivatePostgres, Unavailable
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import Credentials, SignedClient

READY_TIMEOUT_S = 1.0
# Beyond the bound: a loaded 2-core machine's scheduling and one HTTP round trip on loopback.
SLACK_S = 1.0


async def _check(http: httpx.AsyncClient) -> tuple[int, float, httpx.Response]:
    started = time.monotonic()
    r = await http.get("/readyz")
    seconds = time.monotonic() - started
    assert seconds < READY_TIMEOUT_S + SLACK_S, f"/readyz answered {r.status_code} in {seconds:.2f}s"
    return r.status_code, seconds, r


async def _outage(http: httpx.AsyncClient, creds: Credentials, name: str, cut: Callable[[], None],
                  mend: Callable[[], None]) -> None:
    assert (await _check(http))[0] == 200
    cut()
    cut_at = time.monotonic()
    await eventually(lambda: _check(http), until=lambda answer: answer[0] == 503, timeout=10, interval=0.05,
                     what=f"/readyz to answer 503 ({name})")
    not_ready_s = time.monotonic() - cut_at
    latencies = []
    for _ in range(5):
        status, seconds, r = await _check(http)
        latencies.append(seconds)
        assert status == 503 and r.headers["retry-after"] == str(RETRY_AFTER_S), (status, r.headers)
        assert r.json()["error"]["code"] == "service_unavailable"
        assert (await http.get("/healthz")).status_code == 200  # alive all the same
    await asyncio.to_thread(mend)
    mended_at = time.monotonic()
    await eventually(lambda: _check(http), until=lambda answer: answer[0] == 200, timeout=30, interval=0.1,
                     what=f"/readyz to answer 200 again ({name})")
    print(f"{name}: /readyz 503 {not_ready_s:.2f}s after the fault, checks then took at most "
          f"{max(latencies):.2f}s; 200 again {time.monotonic() - mended_at:.2f}s after it was mended")
    # Ready means it: a request that needs the database succeeds at once.
    intent = await SignedClient(http, creds).create_intent()
    assert intent["status"] == "created"


@pytest.mark.postgres
def test_readyz_follows_the_database(tmp_path: Path) -> None:
    try:
        pg = PrivatePostgres()  # its own: this test stops it
    except Unavailable as exc:
        pytest.skip(f"no private PostgreSQL: {exc}")
    with pg, FaultProxyThread("127.0.0.1", pg.port) as proxy:
        migrate(pg.url())
        with start_gateway(pg.url(port=proxy.port), tmp_path, PAYGATE_READY_TIMEOUT_S=str(READY_TIMEOUT_S),
                           **DB_TIMEOUTS) as gateway:
            creds = make_merchant(pg.url())

            async def scenario() -> None:
                async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
                    await _outage(http, creds, "path blackholed", proxy.blackhole, proxy.heal)
                    await _outage(http, creds, "server stopped", pg.stop, pg.resume)

            asyncio.run(scenario())
            assert gateway.proc is not None and gateway.proc.poll() is None, "the gateway died"
