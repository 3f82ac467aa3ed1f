"""``/api/v1/webhooks`` and ``paygate webhooks``: endpoints, secrets, the private-address guard."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from paygate_server.cli import main
from paygate_server.webhooks import guard
from paygate_server.webhooks.dispatcher import Dispatcher
from paygate_server.webhooks.model import MAX_ENDPOINTS
from tests.support.app import TEST_MASTER_KEY, InProcessGateway
from tests.support.processes import make_merchant

HOOKS = "/api/v1/webhooks"

# SPEC §6, in its order.
SPEC_EVENTS = ["payment_intent.created", "payment_intent.in_progress", "payment_intent.requires_capture",
               "payment_intent.succeeded", "payment_intent.failed", "payment_intent.canceled", "refund.succeeded"]


async def test_create_list_delete(gw: InProcessGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    shop, other = await gw.new_merchant(), await gw.new_merchant()
    doc = (await gw.http.get("/api/v1/openapi.json")).json()

    def check(schema: str, instance: object) -> None:
        Draft202012Validator({**doc["components"]["schemas"][schema], "components": doc["components"]}).validate(instance)

    async def fake_resolve(host: str, port: int) -> list[str]:
        return {"hooks.shop.example": ["93.184.216.34"]}.get(host, ["127.0.0.1"])

    monkeypatch.setattr(guard, "resolve_host", fake_resolve)
    r = await shop.post(HOOKS, {"url": "https://hooks.shop.example/paygate",
                                "events": ["payment_intent.succeeded", "refund.succeeded"]})
    assert r.status_code == 201, r.text
    created = r.json()
    check("WebhookEndpoint", created)
    assert created["webhookEndpointId"].startswith("we_") and created["status"] == "enabled"
    assert created["events"] == ["payment_intent.succeeded", "refund.succeeded"]
    assert created["secret"].startswith("whsec_")
    assert 24 <= len(base64.b64decode(created["secret"].removeprefix("whsec_"))) <= 64

    r = await shop.post(HOOKS, {"url": "https://hooks.shop.example/all"})
    assert r.status_code == 201 and r.json()["events"] == SPEC_EVENTS  # default: every event type
    listed = (await shop.get(HOOKS)).json()
    check("WebhookEndpointList", listed)
    assert [e["url"] for e in listed["data"]] == ["https://hooks.shop.example/all", "https://hooks.shop.example/paygate"]
    assert all("secret" not in e for e in listed["data"])  # shown once, at creation
    assert (await other.get(HOOKS)).json()["data"] == []

    target = f"{HOOKS}/{created['webhookEndpointId']}"
    assert (await other.request("DELETE", target)).status_code == 404  # never reveal another's
    r = await shop.request("DELETE", target)
    assert r.status_code == 204 and r.content == b""
    assert (await shop.request("DELETE", target)).status_code == 404
    assert (await shop.request("DELETE", f"{HOOKS}/garbage")).status_code == 404
    assert len((await shop.get(HOOKS)).json()["data"]) == 1


async def test_create_is_idempotent(gw: InProcessGateway) -> None:
    shop = await gw.new_merchant()
    # A public address literal: accepted without DNS; nothing is ever sent (no intents here).
    body = {"url": "http://93.184.216.34/hook"}
    first = await shop.post(HOOKS, body, idempotency_key="hook-1")
    again = await shop.post(HOOKS, body, idempotency_key="hook-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    assert len((await shop.get(HOOKS)).json()["data"]) == 1


async def test_a_merchant_has_at_most_max_endpoints_even_when_they_are_created_at_once(gw: InProcessGateway) -> None:
    """The limit is a count and an insert in one transaction. On PostgreSQL (read
    committed) concurrent creations each counted the same endpoints and all inserted: 40 at
    once left 17 to 26 (found by hand against ``paygate serve``); now they take turns per
    merchant. A deleted endpoint frees its place."""
    shop, other = await gw.new_merchant(), await gw.new_merchant()
    answers = await asyncio.gather(*(shop.post(HOOKS, {"url": f"http://93.184.216.34/hook{i}"}) for i in range(40)))
    assert sorted(r.status_code for r in answers) == [201] * MAX_ENDPOINTS + [400] * (40 - MAX_ENDPOINTS)
    refused = next(r for r in answers if r.status_code == 400).json()["error"]
    assert (refused["code"], refused["param"]) == ("parameter_invalid", "url"), refused
    listed = (await shop.get(HOOKS)).json()["data"]
    assert len(listed) == MAX_ENDPOINTS
    assert (await other.post(HOOKS, {"url": "http://93.184.216.34/other"})).status_code == 201  # per merchant
    assert (await shop.request("DELETE", f"{HOOKS}/{listed[0]['webhookEndpointId']}")).status_code == 204
    assert (await shop.post(HOOKS, {"url": "http://93.184.216.34/again"})).status_code == 201
    assert (await shop.post(HOOKS, {"url": "http://93.184.216.34/more"})).status_code == 400


async def test_the_list_pages_like_the_intents_list(gw: InProcessGateway) -> None:
    """``limit`` and ``startingAfter`` as ``GET /api/v1/payment/intents`` takes them (the
    query string was ignored: ``limit=2`` answered every endpoint, ``hasMore`` always
    false); without them, every endpoint (the default page is the maximum, 100 ≥ 16)."""
    shop, other = await gw.new_merchant(), await gw.new_merchant()
    for i in range(5):
        assert (await shop.post(HOOKS, {"url": f"http://93.184.216.34/page{i}"})).status_code == 201
    everything = (await shop.get(HOOKS)).json()
    ids = [e["webhookEndpointId"] for e in everything["data"]]
    assert len(ids) == 5 and not everything["hasMore"]
    first = (await shop.get(f"{HOOKS}?limit=2")).json()
    assert ([e["webhookEndpointId"] for e in first["data"]], first["hasMore"]) == (ids[:2], True)
    second = (await shop.get(f"{HOOKS}?limit=2&startingAfter={ids[1]}")).json()
    assert ([e["webhookEndpointId"] for e in second["data"]], second["hasMore"]) == (ids[2:4], True)
    assert (await shop.request("DELETE", f"{HOOKS}/{ids[3]}")).status_code == 204  # a cursor deleted meanwhile
    last = (await shop.get(f"{HOOKS}?limit=2&startingAfter={ids[3]}")).json()
    assert ([e["webhookEndpointId"] for e in last["data"]], last["hasMore"]) == (ids[4:], False)
    # Another merchant's endpoint as the cursor: an empty page, as the intents' (never a 404).
    assert (await other.get(f"{HOOKS}?startingAfter={ids[0]}")).json() == {"data": [], "hasMore": False}
    # An unknown parameter is ignored, as the intents list ignores one.
    assert (await shop.get(f"{HOOKS}?colour=blue")).json()["data"] == (await shop.get(HOOKS)).json()["data"]
    assert (await shop.get("/api/v1/payment/intents?colour=blue")).status_code == 200
    for bad, status, param in [("limit=0", 400, "limit"), ("limit=101", 400, "limit"), ("limit=abc", 400, "limit"),
                               ("startingAfter=pi_x", 404, "startingAfter")]:
        r = await shop.get(f"{HOOKS}?{bad}")
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), (bad, r.text)
    doc = (await gw.http.get("/api/v1/openapi.json")).json()
    assert {p["name"] for p in doc["paths"][HOOKS]["get"]["parameters"]} == {"limit", "startingAfter"}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.7/",
    "http://172.16.5.5/", "http://169.254.169.254/latest/meta-data", "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook", "http://[fe80::1]/hook", "http://0.0.0.0/hook", "http://100.64.1.1/",
])
async def test_private_destinations_are_refused(gw: InProcessGateway, url: str) -> None:
    shop = await gw.new_merchant()
    r = await shop.post(HOOKS, {"url": url})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "parameter_invalid" and error["param"] == "url"


@pytest.mark.parametrize("body, param", [
    ({"url": "ftp://93.184.216.34/x"}, "url"), ({"url": "https://user:pw@93.184.216.34/x"}, "url"),
    ({"url": "https://93.184.216.34/x#frag"}, "url"), ({"url": "https://93.184.216.34/" + "a" * 2100}, "url"),
    ({}, "url"), ({"url": "https://93.184.216.34/x", "events": []}, "events"),
    ({"url": "https://93.184.216.34/x", "events": ["payment_intent.exploded"]}, "events"),
    ({"url": "https://93.184.216.34/x", "secret": "whsec_mine"}, "secret"),
])
async def test_invalid_requests(gw: InProcessGateway, body: dict, param: str) -> None:  # type: ignore[type-arg]
    shop = await gw.new_merchant()
    r = await shop.post(HOOKS, body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_retry_schedule_spans_at_least_three_days() -> None:
    from paygate_server.config import Settings

    settings = Settings()
    schedule = settings.webhook_retry_schedule_s
    assert sum(schedule) * 0.8 >= 3 * 86400  # even with every delay jittered down
    assert settings.webhook_timeout_s == 15.0
    dispatcher = Dispatcher.__new__(Dispatcher)
    dispatcher._settings = settings
    assert dispatcher.next_delay_s(1) is not None and 4 <= dispatcher.next_delay_s(1) <= 6
    assert dispatcher.next_delay_s(len(schedule)) is not None
    assert dispatcher.next_delay_s(len(schedule) + 1) is None


def test_webhooks_cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    creds = make_merchant(database_url)
    for name, value in {"PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path),
                        "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}.items():
        monkeypatch.setenv(name, value)

    def paygate(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = paygate("webhooks", "create", "--merchant", creds.merchant_id, "--url", "http://127.0.0.1:9/hook")
    assert code == 2 and "private" in err
    monkeypatch.setenv("PAYGATE_WEBHOOK_ALLOW_PRIVATE", "1")
    code, out, err = paygate("webhooks", "create", "--merchant", creds.merchant_id, "--url",
                             "http://127.0.0.1:9/hook", "--event", "payment_intent.succeeded", "--json")
    assert code == 0, err
    created = json.loads(out)
    assert set(created) >= {"webhookEndpointId", "url", "events", "secret"}
    assert created["events"] == ["payment_intent.succeeded"] and created["secret"].startswith("whsec_")
    code, out, _ = paygate("webhooks", "list", "--merchant", creds.merchant_id, "--json")
    assert [e["webhookEndpointId"] for e in json.loads(out)["data"]] == [created["webhookEndpointId"]]
    code, _, err = paygate("webhooks", "create", "--merchant", "mer_nope000000000000", "--url", "http://127.0.0.1:9/")
    assert code == 2 and "no merchant" in err
    code, _, err = paygate("webhooks", "replay")
    assert code == 2 and "--all" in err
    code, out, _ = paygate("webhooks", "deliveries", "--status", "failed", "--merchant", creds.merchant_id)
    assert code == 0 and "no deliveries" in out


def test_the_cli_is_a_real_command(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "paygate_server", "webhooks", "create", "--help"],
                       env={**os.environ, "PAYGATE_DATA_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--merchant" in r.stdout and "--url" in r.stdout
