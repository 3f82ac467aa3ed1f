"""Hardening #15.11: a database outage answers ``503 service_unavailable`` with
``Retry-After`` (never ``500``), on every route, and the gateway reconnects by itself.

Outages are made per database, never by restarting the shared PostgreSQL server: its
backends terminated with ``pg_terminate_backend``, or a TCP proxy in front of it closed;
pool exhaustion with a one-connection pool held by the test.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from paygate_server.storage import create_database
from paygate_server.storage.availability import RETRY_AFTER_S, is_database_unavailable, log_failure
from paygate_server.storage.group_commit import BatchLost
from paygate_server.storage.statements import Sql, execute
from tests.support.app import running_gateway
from tests.support.app import test_settings as settings_for
from tests.support.databases import pg_base_url
from tests.support.eventually import eventually

DEADLINE_S = 20.0


def _require_postgresql(database_url: str) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("a PostgreSQL outage")


async def _admin() -> asyncpg.Connection:
    url = make_url(pg_base_url())
    return await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                                 user=url.username, password=url.password, database=url.database)


async def _terminate_backends(database: str) -> None:
    """Kill every server process of ``database`` and wait until they are gone."""
    admin = await _admin()
    try:
        killed = await admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()) t", database)
        assert killed > 0
        await eventually(lambda: admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database),
                         until=lambda alive: alive == 0, timeout=DEADLINE_S, what="the backends to be gone")
    finally:
        await admin.close()


def _unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "service_unavailable")
    assert r.headers["retry-after"] == str(RETRY_AFTER_S)
    assert r.headers.get("x-request-id")
    assert "Traceback" not in r.text


async def _until_ok(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """The gateway recovers by itself: a later request succeeds, within a deadline."""
    async def answer() -> httpx.Response:
        r = await call()
        if r.status_code >= 300:
            _unavailable(r)  # until then, every answer is a proper 503
        return r

    return await eventually(answer, until=lambda r: r.status_code < 300, timeout=DEADLINE_S, interval=0.05,
                            what="the gateway to reconnect")


# --- the classification, on real errors ----------------------------------------------

def test_classification_of_real_errors(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN IMMEDIATE")
    holder.close()
    other.close()
    assert is_database_unavailable(locked.value)
    wrapped = sa_exc.OperationalError("BEGIN", None, locked.value)
    assert is_database_unavailable(wrapped)
    assert is_database_unavailable(sa_exc.TimeoutError("QueuePool limit of size 1 overflow 0 reached"))
    assert is_database_unavailable(ConnectionRefusedError(111, "Connect call failed"))
    # A SQLite write batch lost with its connection: nothing of it was written, retry later.
    assert is_database_unavailable(BatchLost("the write batch was lost with its connection: RuntimeError()"))
    # asyncpg on a connection the server is closing under it (seen across a restart under
    # load: tests/e2e/test_postgres_restart.py); its other internal errors stay bugs.
    assert is_database_unavailable(asyncpg.InternalClientError(
        "cannot switch to state 11; another operation (2) is in progress"))
    assert not is_database_unavailable(asyncpg.InternalClientError("unexpected codec"))
    # Bugs and bad data stay 500s / 400s: not an outage.
    for exc in (ValueError("x"), FileNotFoundError("x"), KeyError("x"),
                sa_exc.IntegrityError("INSERT", None, sqlite3.IntegrityError("UNIQUE"))):
        assert not is_database_unavailable(exc)


async def test_refused_connection_is_unavailable() -> None:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        db = create_database(f"postgresql://nobody@127.0.0.1:{port}/none")
        try:
            with pytest.raises(Exception) as caught:
                async with db.read() as conn:
                    await conn.execute(text("SELECT 1"))
        finally:
            await db.dispose()
    assert is_database_unavailable(caught.value)


# --- statement parameters never reach an error's text (so never a log) -----------------

async def test_errors_do_not_carry_statement_parameters(database_url: str) -> None:
    marker = "sk_test_marker_6d1f0c"
    db = create_database(database_url)
    try:
        with pytest.raises(sa_exc.DBAPIError) as through_core:
            async with db.write() as conn:
                await conn.execute(text("INSERT INTO merchants (id) VALUES (:id)"), {"id": marker})
        assert marker not in str(through_core.value)
        with pytest.raises(sa_exc.IntegrityError) as through_driver:
            async with db.write() as conn:
                await execute(conn, Sql("INSERT INTO merchants (id) VALUES (:id)"), id=marker)
        assert marker not in str(through_driver.value)
    finally:
        await db.dispose()


# --- outages through the HTTP layer ---------------------------------------------------

async def test_terminated_backends_answer_503_then_recover(database_url: str, tmp_path: Path) -> None:
    _require_postgresql(database_url)
    async with running_gateway(settings_for(database_url, tmp_path)) as gw:
        shop = await gw.new_merchant()
        intent = await shop.create_intent()
        for _ in range(3):  # several pooled connections in use
            await asyncio.gather(*(shop.get("/api/v1/payment/intents?limit=1") for _ in range(4)))
        await _terminate_backends(make_url(database_url).database or "")

        # The checkout's routes and the API alike: 503, then recovery without a restart.
        frame = await gw.http.get("/checkout/v1/frame", params={"clientSecret": intent["clientSecret"]})
        _unavailable(frame)
        await _until_ok(lambda: shop.get("/api/v1/payment/intents?limit=1"))
        r = await _until_ok(lambda: gw.http.get("/checkout/v1/frame",
                                                params={"clientSecret": intent["clientSecret"]}))
        assert r.status_code == 200
        # Recovered for good: every pooled connection was replaced, not handed out to fail.
        answers = await asyncio.gather(*(shop.get("/api/v1/payment/intents?limit=1") for _ in range(8)))
        assert [a.status_code for a in answers] == [200] * 8


class _Proxy:
    """A TCP proxy to PostgreSQL that can be cut (listener closed, connections reset) and
    brought back on the same port: the database unreachable, for this test only."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def _proxied(database_url: str) -> AsyncIterator[tuple[_Proxy, str]]:
    url = make_url(database_url)
    proxy = _Proxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    finally:
        with contextlib.suppress(Exception):
            await proxy.cut()


async def test_unreachable_database_answers_503_under_concurrent_payers(database_url: str, tmp_path: Path) -> None:
    _require_postgresql(database_url)
    async with _proxied(database_url) as (proxy, via_proxy):
        async with running_gateway(settings_for(via_proxy, tmp_path)) as gw:
            shop = await gw.new_merchant()
            await shop.create_intent()
            await proxy.cut()

            async def payer(n: int) -> list[int]:
                codes = []
                for i in range(3):
                    r = await shop.post("/api/v1/payment/intent", {
                        "amount": 100 + n, "currency": "USD", "productDetails": {"sku": f"{n}-{i}"}},
                        idempotency_key=f"outage-{n}-{i}")
                    if r.status_code != 201:
                        _unavailable(r)
                    codes.append(r.status_code)
                return codes

            codes = [c for found in await asyncio.gather(*(payer(n) for n in range(8))) for c in found]
            assert set(codes) == {503}, codes  # nothing can be written while it is down

            await proxy.start()  # back, on the same port
            await _until_ok(lambda: shop.get("/api/v1/payment/intents?limit=1"))
            r = await shop.post("/api/v1/payment/intent", {"amount": 100, "currency": "USD",
                                                           "productDetails": {"sku": "0-0"}},
                                idempotency_key="outage-0-0")
            assert r.status_code == 201, r.text
            r = await shop.get("/api/v1/payment/intents?limit=100")
            assert len(r.json()["data"]) == 2  # the first intent and the retried one, once


async def test_exhausted_pool_answers_503(database_url: str, tmp_path: Path) -> None:
    _require_postgresql(database_url)
    settings = settings_for(database_url, tmp_path, db_pool_size=1, db_pool_timeout_s=0.3)
    async with running_gateway(settings) as gw:
        shop = await gw.new_merchant()
        await shop.create_intent()
        # The notifier's LISTEN connection is its own; the pool's one connection is taken here.
        async with gw.gateway.db.read() as held:
            await held.execute(text("SELECT 1"))
            started = time.monotonic()
            _unavailable(await shop.get("/api/v1/payment/intents?limit=1"))
            assert time.monotonic() - started < 5.0
        r = await shop.get("/api/v1/payment/intents?limit=1")
        assert r.status_code == 200, r.text


def test_a_background_loop_logs_an_outage_in_one_line_and_a_bug_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("paygate.test_loop")
    for exc in (sqlite3.OperationalError("database is locked"), ValueError("a bug")):
        try:
            raise exc
        except Exception:
            log_failure(log, "pass %d failed", 7)
    outage, bug = caplog.records
    assert (outage.levelname, outage.getMessage(), outage.exc_info) == (
        "WARNING", "pass 7 failed: the database is unavailable (OperationalError)", None)
    assert (bug.levelname, bug.getMessage()) == ("ERROR", "pass 7 failed")
    assert bug.exc_info is not None and bug.exc_info[1] is exc
