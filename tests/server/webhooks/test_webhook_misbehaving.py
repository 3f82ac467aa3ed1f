"""Webhook endpoints that misbehave (SPEC §6; docs/reliability.md, "Webhook endpoints
misbehaving"): each attempt ends within the timeout, is retried on the schedule, lets in a
bounded number of bytes, and leaves a readable record without the signing secret; every
attempt that reached the endpoint verifies with the third-party ``standardwebhooks``, with
one ``webhook-id`` and a fresh timestamp."""
from __future__ import annotations

import base64
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from paygate_server import jsoncodec
from paygate_server.storage.schema_history import webhook_deliveries
from tests.server.console.conftest import running_console
from tests.server.webhooks.misbehaving import (
    BEHAVIOURS,
    Connection,
    MisbehavingServer,
    answer,
    silent,
)
from tests.server.webhooks.receiver import Receiver
from tests.server.webhooks.test_webhook_delivery import FAST, endpoint
from tests.support.app import TEST_MASTER_KEY, running_gateway
from tests.support.app import test_settings as gateway_settings
from tests.support.eventually import eventually
from tests.support.tls_proxy import _self_signed

TIMEOUT_S = 1.5
SCHEDULE = (0.2, 0.2)  # three attempts, then failed
SLACK_S = 1.0  # scheduling on a loaded 2-core machine
# Bytes an endless answer gets written before the gateway hangs up: the two sockets' kernel
# buffers on loopback (~4 MB measured here; up to tcp_rmem + tcp_wmem elsewhere), not the
# gateway's memory (tracemalloc: at most 0.9 MiB more at the peak of one of these attempts).
MAX_LET_IN = 32 * 1024 * 1024
SETTINGS = {**FAST, "webhook_timeout_s": TIMEOUT_S, "webhook_retry_schedule_s": SCHEDULE}


@dataclass(frozen=True)
class Case:
    behaviour: str
    delivered: bool  # a 2xx status line within the timeout is delivered, whatever follows it
    error: str  # in the recorded error (failed cases)
    tls: str | None = None  # "bad-cert": a self-signed certificate; "silent": a handshake that never ends


CASES = [
    Case("silent", False, f"no answer within {TIMEOUT_S:g} s"),
    Case("late_ok", False, f"no answer within {TIMEOUT_S:g} s"),
    Case("drip_headers", False, f"no answer within {TIMEOUT_S:g} s"),
    Case("drip_body", True, ""),
    Case("endless_body", True, ""),
    Case("endless_headers", False, "RemoteProtocolError"),
    Case("one_endless_header", False, "RemoteProtocolError"),
    Case("reset_mid_request", False, "reset"),
    Case("garbage", False, "RemoteProtocolError"),
    Case("redirect_private", False, ""),
    Case("redirect_public", False, ""),
    Case("gone", False, "410 Gone: endpoint disabled"),
    Case("tls_bad_cert", False, "CERTIFICATE_VERIFY_FAILED", tls="bad-cert"),
    Case("tls_silent", False, f"no answer within {TIMEOUT_S:g} s", tls="silent"),
]


def secret_forms(secret: str) -> list[str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return [secret, secret.removeprefix("whsec_"), key.hex(), base64.urlsafe_b64encode(key).decode()]


def server_tls(tmp_path: Path) -> ssl.SSLContext:
    cert, key = _self_signed("localhost", tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def delivery_row(live: Any, endpoint_id: str) -> Any:
    async with live.gateway.db.read() as conn:
        return (await conn.execute(select(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id))).one_or_none()


def check_attempts(connections: list[Connection], secret: str, *, attempts: int) -> None:
    """Each connection ended within the timeout; the retries came on the schedule; what
    arrived verifies, with one id and a timestamp of its own."""
    for conn in connections:
        assert conn.closed is not None and conn.closed - conn.opened < TIMEOUT_S + SLACK_S, conn
        assert conn.sent <= MAX_LET_IN, conn.sent
    for earlier, later in zip(connections, connections[1:], strict=False):
        assert earlier.closed is not None
        gap = later.opened - earlier.closed  # the retry's delay (±20 %), less how late the server saw the close
        assert SCHEDULE[0] * 0.8 - 0.25 <= gap < SCHEDULE[0] * 1.2 + SLACK_S, (gap, connections)
    requests = [c for c in connections if c.headers is not None]
    assert len({r.headers["webhook-id"] for r in requests if r.headers}) <= 1
    stamps = []
    for r in requests:
        assert r.headers is not None
        Webhook(secret).verify(r.body, r.headers)
        stamps.append(int(r.headers["webhook-timestamp"]))
    assert stamps == sorted(stamps)
    if len(requests) == attempts and connections[-1].opened - connections[0].opened >= 1.0 * (attempts - 1):
        assert len(set(stamps)) == attempts  # a second or more apart: each attempt signed afresh


@pytest.mark.parametrize("case", CASES, ids=[c.behaviour for c in CASES])
async def test_a_misbehaving_endpoint(case: Case, database_url: str, tmp_path: Path) -> None:
    async with running_gateway(gateway_settings(database_url, tmp_path, **SETTINGS)) as live, \
            Receiver() as elsewhere:
        behaviour = {"redirect_private": answer(302, f"Location: {elsewhere.url()}\r\n"),
                     "redirect_public": answer(302, "Location: http://93.184.216.34/hook\r\n"),
                     "gone": answer(410), "tls_bad_cert": answer(200), "tls_silent": silent,
                     }.get(case.behaviour) or BEHAVIOURS[case.behaviour]
        tls = server_tls(tmp_path) if case.tls == "bad-cert" else None
        async with MisbehavingServer(behaviour, tls=tls) as server:
            host = "localhost" if case.tls else "127.0.0.1"
            url = server.url(host).replace("http://", "https://") if case.tls == "silent" else server.url(host)
            shop = await live.new_merchant()
            hook = await endpoint(shop, url, events=["payment_intent.created"])
            await shop.create_intent()
            started = time.monotonic()

            expected = 1 if case.delivered or case.behaviour == "gone" else 1 + len(SCHEDULE)
            row = await eventually(lambda: delivery_row(live, hook["webhookEndpointId"]),
                                   until=lambda r: r is not None and r.status != "pending", timeout=15.0,
                                   what="the delivery's end")
            elapsed = time.monotonic() - started
            assert row.status == ("delivered" if case.delivered else "failed") and row.attempts == expected, row
            # Every attempt within its timeout, the retries on the schedule, the poll and the relay.
            assert elapsed < expected * (TIMEOUT_S + 0.3) + sum(SCHEDULE) * 1.2 + 2 * SLACK_S, elapsed
            if case.tls != "bad-cert":
                assert len(server.connections) == expected
                await eventually(lambda: all(c.closed for c in server.connections), timeout=TIMEOUT_S + SLACK_S,
                                 what="every connection closed by the gateway")
                check_attempts(server.connections, hook["secret"], attempts=expected)
            else:
                assert server.requests == []  # nothing sent over a connection the gateway does not trust
            assert elsewhere.requests == []  # redirects are not followed, to any address

            if case.delivered:
                assert row.last_status_code == 200 and row.last_error is None
            else:
                check_recorded_failure(case, row, hook["secret"])


def check_recorded_failure(case: Case, row: Any, secret: str) -> None:
    if case.behaviour.startswith("redirect"):
        assert row.last_status_code == 302 and row.last_error == "HTTP 302"
    else:
        assert case.error in row.last_error, row.last_error
        assert not row.last_error.rstrip().endswith(":"), row.last_error  # says what happened
    for form in secret_forms(secret):
        assert form not in row.last_error


async def test_misbehaving_endpoints_hold_up_no_other_and_read_well(database_url: str, tmp_path: Path) -> None:
    """Seven bad endpoints at once, at their concurrency limit: a healthy one is delivered to
    within a fraction of the timeout; then ``paygate webhooks deliveries`` and the console
    show every failure, readably, with no secret."""
    bad = ["silent", "drip_headers", "late_ok", "endless_headers", "reset_mid_request", "garbage", "one_endless_header"]
    settings = gateway_settings(database_url, tmp_path, **{**SETTINGS, "webhook_endpoint_concurrency": 2,
                                                           "webhook_max_concurrency": 2 * len(bad) + 2})
    async with running_gateway(settings) as live, Receiver() as healthy:
        servers = [MisbehavingServer(BEHAVIOURS[name]) for name in bad]
        for server in servers:
            await server.__aenter__()
        try:
            bad_shop, good_shop = await live.new_merchant("Bad hooks"), await live.new_merchant("Good hooks")
            secrets = [(await endpoint(bad_shop, s.url(), events=["payment_intent.created"]))["secret"]
                       for s in servers]
            await endpoint(good_shop, healthy.url(), events=["payment_intent.created"])
            bad_intents = [(await bad_shop.create_intent())["paymentIntentId"] for _ in range(2)]
            await eventually(lambda: all(len(s.connections) >= 2 for s in servers), what="the bad endpoints busy")
            started = time.monotonic()
            for _ in range(3):
                await good_shop.create_intent()
            await eventually(lambda: len(healthy.delivered_ids()) == 3, timeout=TIMEOUT_S, what="the healthy endpoint")
            assert time.monotonic() - started < TIMEOUT_S
            assert all(sum(c.closed is None for c in s.connections) <= 2 for s in servers)  # their limit, 2 each

            async def statuses() -> list[str]:
                async with live.gateway.db.read() as conn:
                    return list((await conn.execute(select(webhook_deliveries.c.status).where(
                        webhook_deliveries.c.merchant_id == bad_shop.creds.merchant_id))).scalars())

            await eventually(statuses, until=lambda s: s == ["failed"] * 2 * len(bad), timeout=15.0,
                             what="every bad delivery failed")
        finally:
            for server in servers:
                await server.__aexit__(None, None, None)
        rows = _listed(database_url, tmp_path, bad_shop.creds.merchant_id)  # as the operator's command shows them
        assert len(rows) == 2 * len(bad) and {r["status"] for r in rows} == {"failed"}
        texts = [r["lastError"] for r in rows]
        assert all(t and not t.rstrip().endswith(":") for t in texts), texts
        assert all(r["attempts"] == 1 + len(SCHEDULE) for r in rows)
        async with running_console(gateway_settings(database_url, tmp_path, **SETTINGS)) as con:
            await con.log_in(await con.operator("admin"))
            page = await con.http.get(f"/merchants/{bad_shop.creds.merchant_id}")
            assert page.status_code == 200 and "Recent deliveries" in page.text
            assert "no answer within" in page.text and "RemoteProtocolError" in page.text
            payment = await con.http.get(f"/payments/{bad_intents[0]}")  # its events and their deliveries
            assert payment.status_code == 200 and "no answer within" in payment.text, payment.text[:300]
            shown = page.text + payment.text
        for secret in secrets:
            for form in secret_forms(secret):
                assert form not in shown and all(form not in t for t in texts)


def _listed(database_url: str, tmp_path: Path, merchant_id: str) -> list[dict[str, Any]]:
    env = {**os.environ, "PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path),
           "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    out = subprocess.run([sys.executable, "-m", "paygate_server", "webhooks", "deliveries", "--merchant", merchant_id,
                          "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = jsoncodec.loads(out.stdout)
    return listed["data"] if isinstance(listed, dict) else listed
