"""Which server files one ``POST /api/v1/payment/process`` runs (docs/architecture.md, "The walk").

Runs the gateway in-process (tests/support/app.py) on the database given, with a connector
that approves at once, and traces the functions called while one process request with an
``Idempotency-Key`` is served. Prints each file of ``paygate_server`` that ran, and the count
of those outside what every endpoint runs or what this walk does not change (middleware,
authentication, logging, card decryption, rendering, the connector).

    PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/walk.py sqlite:///tmp/walk.db
    PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/walk.py postgresql://127.0.0.1:5432/walk
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from payment_flow import Approve  # this folder's (docs/perf/payment_flow.py)

import paygate
from tests.support.app import running_gateway, test_settings
from tests.support.databases import migrate

# Run by every endpoint, or the same code before and after the storage port. Authentication's
# storage (merchants, storage/api_keys, storage/nonces) and Settings' properties run for every
# endpoint; the relay's wake-up (cdc/, from storage/notifications' NOTIFY listener) is the
# commit's echo on the event loop, not the request's path (before: merchants/repository.py,
# config.py, cdc/relay.py, left out of its 7 the same way). http/direct_routes is a middleware
# every request passes, and on the payment path it stands in for Starlette's router (a
# third-party file, never counted): counting it would count the router only since it is ours.
COMMON = ("http/middleware", "http/direct_routes", "headerguard", "logs", "auth/", "cards/", "crypto", "jsoncodec", "clock", "ids",
          "validation", "http/request_input", "realtime", "faults", "intents/schemas", "processing/connectors",
          "observability/", "state", "errors", "storage/availability", "storage/group_commit", "storage/changes",
          "config", "merchants", "storage/api_keys", "storage/nonces", "cdc/", "storage/notifications")


async def main(url: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        async with running_gateway(test_settings(url, Path(data))) as gw:
            gw.gateway.processing.connector = Approve()  # type: ignore[assignment]
            shop = await gw.new_merchant()
            pid = (await shop.create_intent())["paymentIntentId"]
            jwe = paygate.encrypt_card(gw.gateway.card_keys.jwks(), number="4242424242424242",
                                       exp_month=12, exp_year=2034, cvc="123")
            body = {"paymentIntentId": pid, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}}
            ran: set[str] = set()
            root = str(Path(sys.modules["paygate_server"].__file__).parent) + "/"  # type: ignore[arg-type]

            def profile(frame: Any, event: str, _arg: Any) -> None:
                if event == "call" and frame.f_code.co_filename.startswith(root):
                    ran.add(frame.f_code.co_filename[len(root):])

            sys.setprofile(profile)
            response = await shop.post("/api/v1/payment/process", body, idempotency_key="walk-1")
            sys.setprofile(None)
            assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    walk = sorted(f for f in ran if not any(f.startswith(c) for c in COMMON))
    print(f"{len(ran)} files ran; {len(walk)} on the payment path proper:")
    for f in walk:
        print("  " + f)


if __name__ == "__main__":
    migrate(sys.argv[1])
    asyncio.run(main(sys.argv[1]))
