"""GET /metrics: the promised series after real requests, route templates as labels,
database-derived gauges, processor latency, and bearer-token protection."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from paygate_server.clock import now_us
from paygate_server.observability import InstrumentedConnector, scrape
from paygate_server.storage import create_database
from paygate_server.storage.gauges import read_late_outcomes_open, read_webhook_backlog
from paygate_server.storage.history_prune import HistoryPruneStore
from paygate_server.storage.late_outcomes import mark_handled
from paygate_server.storage.port import LateOutcome
from tests.support.app import running_gateway
from tests.support.app import test_settings as make_settings

# The in-process client addresses http://gateway.test; a scraper on this host names it so (DNS rebinding).
BY_LOOPBACK_NAME = {"host": "127.0.0.1:8080"}
INTENT = "/api/v1/payment/intent"


def _samples(text: str) -> list[Any]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def _value(samples: list[Any], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


async def test_metrics_expose_requests_payments_backlogs_and_processor_latency(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, metrics_db_refresh_s=0.0)
    async with running_gateway(settings) as gw:
        shop = await gw.new_merchant()
        intent = await shop.create_intent()
        got = await shop.get(f"{INTENT}/{intent['paymentIntentId']}")
        assert got.status_code == 200
        assert (await gw.http.get("/no/such/path/abc123")).status_code == 404
        # The processor is not running: the call fails fast and is timed as "unknown".
        connector = gw.gateway.connector
        assert isinstance(connector, InstrumentedConnector)
        # Built once and injected: one wrapper for every caller.
        assert gw.gateway.processing.connector is connector
        assert gw.gateway.refunds.connector is connector
        assert gw.gateway.reconciler.connector is connector
        assert (await connector.lookup("ref_metrics_test")).outcome.value == "unknown"

        r = await gw.http.get("/metrics", headers=BY_LOOPBACK_NAME)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        samples = _samples(r.text)

    assert (_value(samples, "paygate_http_requests_total", method="POST", route=INTENT, status="201") or 0) >= 1
    # Route templates, never concrete ids; unknown paths are one label value.
    assert (_value(samples, "paygate_http_requests_total", method="GET",
                   route=INTENT + "/{intent_id}", status="200") or 0) >= 1
    assert (_value(samples, "paygate_http_requests_total", route="unmatched", status="404") or 0) >= 1
    assert not any(intent["paymentIntentId"] in str(s.labels) for s in samples)
    assert (_value(samples, "paygate_http_request_duration_seconds_count", method="POST", route=INTENT) or 0) >= 1
    assert _value(samples, "paygate_http_request_duration_seconds_bucket", method="POST", route=INTENT, le="+Inf")
    assert _value(samples, "paygate_http_requests_in_progress") is not None
    assert (_value(samples, "paygate_payment_intents", status="created") or 0) >= 1
    assert _value(samples, "paygate_payment_intents", status="succeeded") is not None
    assert _value(samples, "paygate_reconcile_backlog") is not None
    assert _value(samples, "paygate_reconcile_overdue") is not None
    assert _value(samples, "paygate_metrics_database_up") == 1.0
    assert (_value(samples, "paygate_processor_request_duration_seconds_count",
                   connector="simulator", operation="lookup", outcome="unknown") or 0) >= 1


async def test_open_late_outcomes_are_a_gauge_an_alert_can_watch(fresh_database_url: str, tmp_path: Path) -> None:
    """0, then 1 once a processor contradicted a settled refund, then 0 once an operator
    marked it handled: the gauge counts what still needs someone, not what ever happened."""
    settings = make_settings(fresh_database_url, tmp_path, metrics_db_refresh_s=0.0)
    async with running_gateway(settings) as gw:
        async def late_open() -> float | None:
            r = await gw.http.get("/metrics", headers=BY_LOOPBACK_NAME)
            assert r.status_code == 200
            return _value(_samples(r.text), "paygate_late_outcomes_open")

        assert await late_open() == 0.0
        late = LateOutcome(kind="refund", object_id="re_metrics1", intent_id="pi_metrics1", merchant_id="mer_m",
                           connector="pa_adyen1", gateway_status="succeeded", processor_status="failed",
                           processor_text="Refused by the scheme", received_at=now_us())
        assert await gw.gateway.payments.record_late_outcome(late)
        assert await late_open() == 1.0
        [stored] = await gw.gateway.payments.late_outcomes(limit=10)
        async with gw.gateway.db.write() as conn:
            assert await mark_handled(conn, stored.id, "op_metrics", now_us())
        assert await late_open() == 0.0


def _unreachable(database_url: str, tmp_path: Path) -> str:
    """A database of the same kind that cannot be opened: an outage, as the gateway sees one."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'no-such-folder' / 'gone.db'}"
    return make_url(database_url).set(database="paygate_t_no_such_database").render_as_string(hide_password=False)


@pytest.mark.parametrize("read", [read_webhook_backlog, read_late_outcomes_open], ids=["webhooks", "late-outcomes"])
async def test_a_backlog_read_fails_loudly_in_an_outage(database_url: str, tmp_path: Path, read: Any) -> None:
    dead = create_database(_unreachable(database_url, tmp_path))
    try:
        with pytest.raises(Exception):  # noqa: B017 - whichever driver error; what matters is: not 0, not None
            await read(dead)
    finally:
        await dead.dispose()


def _dead_webhook_backlog(monkeypatch: pytest.MonkeyPatch, dead: Any) -> None:
    monkeypatch.setattr(scrape, "read_webhook_backlog", lambda db: read_webhook_backlog(dead))


def _dead_late_outcomes(monkeypatch: pytest.MonkeyPatch, dead: Any) -> None:
    monkeypatch.setattr(scrape, "read_late_outcomes_open", lambda db: read_late_outcomes_open(dead))


def _dead_change_log_size(monkeypatch: pytest.MonkeyPatch, dead: Any) -> None:
    monkeypatch.setattr(scrape, "HistoryPruneStore", lambda db: HistoryPruneStore(dead))


@pytest.mark.parametrize("break_one_read", [_dead_webhook_backlog, _dead_late_outcomes, _dead_change_log_size],
                         ids=["webhook-backlog", "late-outcomes", "change-log-size"])
async def test_a_database_outage_is_visible_on_metrics_not_a_healthy_zero(
        database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        break_one_read: Any) -> None:
    """One of the database gauges' reads goes to a dead database, the others work: all of
    them are left out (one failure domain), ``database_up`` is 0, one line is logged."""
    settings = make_settings(database_url, tmp_path, metrics_db_refresh_s=0.0)
    dead = create_database(_unreachable(database_url, tmp_path))
    try:
        async with running_gateway(settings) as gw:
            with monkeypatch.context() as broken:
                break_one_read(broken, dead)
                with caplog.at_level(logging.WARNING, logger="paygate.metrics"):
                    r = await gw.http.get("/metrics", headers=BY_LOOPBACK_NAME)
            healed = _samples((await gw.http.get("/metrics", headers=BY_LOOPBACK_NAME)).text)
    finally:
        await dead.dispose()
    assert r.status_code == 200
    samples = _samples(r.text)
    assert _value(samples, "paygate_metrics_database_up") == 0.0
    assert _value(samples, "paygate_webhook_backlog") is None  # absent, not a made-up 0
    assert _value(samples, "paygate_late_outcomes_open") is None
    assert _value(samples, "paygate_payment_intents", status="created") is None  # one failure domain
    assert _value(samples, "paygate_change_log_rows") is None
    assert any(s.name.startswith("paygate_http_") for s in samples)
    records = [rec for rec in caplog.records if rec.name == "paygate.metrics"]
    assert len(records) == 1 and records[0].exc_info is None and "\n" not in records[0].getMessage()
    assert "gauges are left out" in records[0].getMessage()
    assert _value(healed, "paygate_metrics_database_up") == 1.0
    assert _value(healed, "paygate_webhook_backlog") is not None
    assert _value(healed, "paygate_late_outcomes_open") is not None
    assert _value(healed, "paygate_change_log_rows") is not None


async def test_metrics_token_is_required_when_configured(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, metrics_token="scrape-secret-1")
    async with running_gateway(settings) as gw:
        missing = await gw.http.get("/metrics", headers=BY_LOOPBACK_NAME)
        wrong = await gw.http.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await gw.http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_credentials"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and "paygate_" not in wrong.text
    assert right.status_code == 200 and "paygate_http_requests_total" in right.text


def test_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, a scrape in one process sees the others' counts."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    record = textwrap.dedent("""
        from paygate_server.observability.metrics import HTTP_REQUESTS
        HTTP_REQUESTS.labels("GET", "/healthz", "200").inc(3)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", record], env=env, check=True, timeout=60)
    scrape = textwrap.dedent("""
        from prometheus_client import generate_latest
        from paygate_server.observability.metrics import scrape_registry
        print(generate_latest(scrape_registry()).decode())
    """)
    out = subprocess.run([sys.executable, "-c", scrape], env=env, check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert _value(_samples(out), "paygate_http_requests_total", route="/healthz", status="200") == 6.0


async def test_without_a_token_metrics_are_served_to_direct_loopback_clients_only(
        database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path)
    async with running_gateway(settings) as gw:
        answers = {}
        for host in ("127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1", "10.1.2.3", "192.168.0.7",
                     "2001:db8::1", "::ffff:10.1.2.3"):
            async with gw.client_from(host) as client:
                answers[host] = await client.get("/metrics", headers=BY_LOOPBACK_NAME)
        # Through a reverse proxy on the same host: loopback peer, but relayed for someone.
        async with gw.client_from("127.0.0.1") as client:
            proxied = [await client.get("/metrics", headers={name: "203.0.113.9", **BY_LOOPBACK_NAME})
                       for name in ("X-Forwarded-For", "Forwarded", "X-Real-IP")]
            # A page in a browser on this host whose name now resolves to 127.0.0.1 (DNS
            # rebinding): a loopback peer, under the page's own name.
            rebound = [await client.get("/metrics", headers={"host": host})
                       for host in ("rebound.example", "rebound.example:8080", "localhost.rebound.example")]
            named = [await client.get("/metrics", headers={"host": host})
                     for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080")]
    for host in ("127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"):
        assert answers[host].status_code == 200 and "paygate_http_requests_total" in answers[host].text, host
    for host in ("10.1.2.3", "192.168.0.7", "2001:db8::1", "::ffff:10.1.2.3"):
        assert answers[host].status_code == 404, host
        assert answers[host].json()["error"]["code"] == "resource_missing" and "paygate_" not in answers[host].text
    assert [r.status_code for r in proxied] == [404, 404, 404]
    assert [r.status_code for r in rebound] == [404, 404, 404] and "paygate_" not in rebound[0].text
    assert [r.status_code for r in named] == [200, 200, 200]


async def test_with_a_token_metrics_need_it_from_everywhere_loopback_included(
        database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, metrics_token="scrape-secret-2")
    async with running_gateway(settings) as gw:
        async with gw.client_from("10.1.2.3") as remote, gw.client_from("127.0.0.1") as local:
            remote_ok = await remote.get("/metrics", headers={"Authorization": "Bearer scrape-secret-2"})
            local_without = await local.get("/metrics", headers=BY_LOOPBACK_NAME)
            remote_without = await remote.get("/metrics")
    assert remote_ok.status_code == 200 and "paygate_http_requests_total" in remote_ok.text
    assert local_without.status_code == 401 and remote_without.status_code == 401


def test_a_real_gateway_process_sees_its_loopback_scraper(tmp_path: Path) -> None:
    """uvicorn (on the socket ``paygate serve --fd`` inherits) puts the real TCP peer in the
    scope: a scraper on this host gets the metrics, the same one relayed by a proxy does not."""
    import httpx

    from tests.support.databases import migrated_database_url
    from tests.support.processes import start_gateway

    url = migrated_database_url("sqlite", tmp_path)
    with start_gateway(url, tmp_path) as gateway:
        direct = httpx.get(gateway.base_url + "/metrics")
        relayed = httpx.get(gateway.base_url + "/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
        rebound = httpx.get(gateway.base_url + "/metrics", headers={"Host": "rebound.example"})
    assert direct.status_code == 200 and "paygate_http_requests_total" in direct.text
    assert relayed.status_code == 404
    assert rebound.status_code == 404 and "paygate_" not in rebound.text  # DNS rebinding
