"""Two real gateway processes on one database: shared nonces, cross-process wake-ups."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.support.logscan import scan_server_logs
from tests.support.processes import make_merchant, start_gateway
from tests.support.signing import SignedClient

# Every line these gateway processes log is scanned for secrets after the module.
pytestmark = pytest.mark.usefixtures("scan_server_logs")
__all__ = ["scan_server_logs"]

def test_nonce_replayed_on_another_process_is_refused(database_url: str, tmp_path: Path) -> None:
    creds = make_merchant(database_url)
    with start_gateway(database_url, tmp_path, name="a") as a, start_gateway(database_url, tmp_path, name="b") as b:
        async def run() -> None:
            async with httpx.AsyncClient(base_url=a.base_url) as ha, httpx.AsyncClient(base_url=b.base_url) as hb:
                sa, sb = SignedClient(ha, creds), SignedClient(hb, creds)
                headers = sa.headers_for("GET", "/api/v1/payment/intents", b"")
                first = await ha.get("/api/v1/payment/intents", headers=headers)
                assert first.status_code == 200
                replay = await hb.get("/api/v1/payment/intents", headers=headers)
                assert replay.status_code == 401
                assert replay.json()["error"]["code"] == "nonce_reused"
                assert (await sb.get("/api/v1/payment/intents")).status_code == 200

        asyncio.run(run())


def test_long_poll_on_one_process_wakes_on_a_change_made_by_another(database_url: str, tmp_path: Path) -> None:
    creds = make_merchant(database_url)
    with start_gateway(database_url, tmp_path, name="a") as a, start_gateway(database_url, tmp_path, name="b") as b:
        async def run() -> list[float]:
            latencies = []
            async with httpx.AsyncClient(base_url=a.base_url, timeout=40) as ha, \
                    httpx.AsyncClient(base_url=b.base_url, timeout=40) as hb:
                sa, sb = SignedClient(ha, creds), SignedClient(hb, creds)
                for _ in range(5):
                    pid = (await sa.create_intent())["paymentIntentId"]
                    waiter = asyncio.create_task(sa.get(f"/api/v1/payment/status?paymentIntentId={pid}&wait=30"))
                    # Let the waiter reach process A before the change; a 1-s wait bound
                    # only delays the test if the waiter is slow, it cannot make it pass.
                    done, _ = await asyncio.wait({waiter}, timeout=0.3)
                    assert not done, "the long-poll answered before anything changed"
                    changed_at = time.monotonic()
                    r = await sb.post("/api/v1/payment/cancel", {"paymentIntentId": pid})
                    assert r.status_code == 200
                    answered = await asyncio.wait_for(waiter, 10)
                    latencies.append(time.monotonic() - changed_at)
                    assert answered.json()["status"] == "canceled"
            return latencies

        latencies = asyncio.run(run())
        # Far below the 30 s wait: the change reached the other process's waiter.
        assert max(latencies) < 5, latencies
