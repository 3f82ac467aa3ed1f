"""Logs of a real ``paygate serve`` process: a startup line, one structured line per request
(JSON or text), nothing secret in either; the scanner that the end-to-end suite runs over
every server log finds what it must."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.databases import migrated_database_url
from tests.support.logscan import leaks_in
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import Credentials, SignedClient

INTENT = "/api/v1/payment/intent"


def _traffic(base_url: str, database_url: str) -> dict[str, Any]:
    return asyncio.run(_requests(base_url, make_merchant(database_url)))


async def _requests(base_url: str, creds: Credentials) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url) as http:
        client = SignedClient(http, creds)
        created = await client.request("POST", INTENT, {"amount": 1999, "currency": "USD",
                                                          "productDetails": {"sku": "mug-01"}})
        intent_id = created.json()["paymentIntentId"]
        got = await client.request("GET", f"{INTENT}/{intent_id}")
        missing = await client.request("GET", f"{INTENT}/pi_{'a' * 26}")
        card_in_query = await client.request("GET", f"{INTENT}/{intent_id}?note=4242424242424242")
        unauthenticated = await http.get(f"{INTENT}/{intent_id}")
    assert (created.status_code, got.status_code, missing.status_code) == (201, 200, 404)
    assert card_in_query.status_code == 400 and unauthenticated.status_code == 401
    return {"merchant": creds.merchant_id, "intent": intent_id, "created": created, "missing": missing,
            "unauthenticated": unauthenticated}


def test_json_request_lines_and_the_startup_line(tmp_path: Path) -> None:
    url = migrated_database_url("sqlite", tmp_path)
    with start_gateway(url, tmp_path, PAYGATE_LOG_FORMAT="json",
                       PAYGATE_PROCESSOR_URL="http://user:pw@127.0.0.1:9/x?token=abc") as gateway:
        seen = _traffic(gateway.base_url, url)
    lines = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    startup = [line for line in lines if line["logger"] == "paygate.startup"]
    assert len(startup) == 1
    assert startup[0]["version"] and startup[0]["database"] == "sqlite" and startup[0]["workers"] == 1
    assert startup[0]["listen"].startswith(f"127.0.0.1:{gateway.port}")
    assert startup[0]["processor"] == "http://127.0.0.1:9/x"  # no user, password or query

    requests = [line for line in lines if line["logger"] == "paygate.request"]
    by_id = {line["request_id"]: line for line in requests}
    created = by_id[seen["created"].headers["x-request-id"]]
    assert created["method"] == "POST" and created["route"] == INTENT and created["status"] == 201
    assert created["merchant_id"] == seen["merchant"] and created["error_code"] is None
    assert isinstance(created["latency_ms"], float) and created["time"].endswith("Z")
    missing = by_id[seen["missing"].headers["x-request-id"]]
    assert missing["route"] == INTENT + "/{intent_id}" and missing["status"] == 404
    assert missing["error_code"] == "resource_missing" and missing["merchant_id"] == seen["merchant"]
    denied = by_id[seen["unauthenticated"].headers["x-request-id"]]
    assert denied["status"] == 401 and denied["error_code"] == "missing_credentials"
    assert denied["merchant_id"] is None
    codes = [line["error_code"] for line in requests]
    assert "plaintext_card_data" in codes
    # The route template, never the concrete path or query: no intent id, no card number.
    assert all(seen["intent"] not in json.dumps(line) for line in requests)
    assert not [line for line in gateway.output().splitlines() if leaks_in(line)]


def test_text_lines_and_the_switch_that_turns_request_lines_off(tmp_path: Path) -> None:
    url = migrated_database_url("sqlite", tmp_path)
    with start_gateway(url, tmp_path, name="text") as gateway:
        _traffic(gateway.base_url, url)
    text = gateway.output()
    assert " INFO paygate.startup paygate serve starting version=" in text
    request_lines = [line for line in text.splitlines() if " paygate.request " in line]
    assert any("route=/api/v1/payment/intent/{intent_id} status=404" in line
               and "error_code=resource_missing" in line for line in request_lines)
    assert len(request_lines) >= 5

    with start_gateway(url, tmp_path, name="quiet", PAYGATE_ACCESS_LOG="0") as quiet:
        _traffic(quiet.base_url, url)
    assert "paygate.startup" in quiet.output() and "paygate.request" not in quiet.output()


def test_a_wrong_log_format_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "paygate_server", "serve", "--port", "0"],
                            env={"PAYGATE_LOG_FORMAT": "xml", "PAYGATE_DATA_DIR": str(tmp_path),
                                 "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "PAYGATE_LOG_FORMAT" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("line", "kinds"), [
    ('{"card":{"number":"4242424242424242"}}', ["card number"]),
    ("card 4000 0000 0000 9995 declined", ["card number"]),
    ("pan=378282246310005", ["card number"]),
    ('"cvc": "123"', ["cvc field"]),
    ("cvc=4567", ["cvc field"]),
    ("signingSecret sk_test_3b003bab", ["signing secret"]),
    ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ["webhook secret"]),
    ("pi_abc_secret_def", ["client secret"]),
    ('{"clientSecret":"x"}', ["client secret"]),
    ("X-Signature: sha256=5115bba367b9f2e7a39b00e7bceeee47266fad4e0bf21e348a11bf85c7afcd46", ["request signature"]),
    ("webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=", ["webhook signature"]),
])
def test_the_scanner_finds_every_kind_of_secret(line: str, kinds: list[str]) -> None:
    assert leaks_in(line) == kinds


@pytest.mark.parametrize("line", [
    '2026-12-02T08:18:12.188Z INFO paygate.request request route=/api/v1/payment/intent/{intent_id} '
    'status=404 latency_ms=1.25 request_id=req_k3v7q2m5x4 merchant_id=mer_ab12cd error_code=resource_missing',
    "4242424242424241 is not Luhn-valid; 123456789012 is too short; 1700000000000 epoch ms is not either",
    "pk_test_abc (an API key is sent in the clear anyway); card last4 4242, bin 424242",
])
def test_the_scanner_passes_clean_lines(line: str) -> None:
    assert leaks_in(line) == []
