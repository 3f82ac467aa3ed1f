"""``paygate demo``: the gateway and the processor simulator on localhost, with a demo
merchant whose credentials are kept in ``$PAYGATE_DATA_DIR/demo-merchant.json`` so data and
keys survive restarts."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from typing import Any

from paygate_server.config import Settings

__all__ = ["add_commands", "ensure_demo_merchant"]

TEST_CARDS = """\
  4242 4242 4242 4242   approved (Visa)        4000 0000 0000 9995   declined: insufficient funds
  5555 5555 5555 4444   approved (Mastercard)  4000 0000 0000 0002   declined: generic
  4000 0000 0000 1026   approved, answer lost — settled by the reconciler"""


def ensure_demo_merchant(settings: Settings, origins: list[str]) -> dict[str, Any]:
    from paygate_server.crypto import load_master_key
    from paygate_server.db import create_database, upgrade
    from paygate_server.merchants import create_merchant

    path = settings.data_dir / "demo-merchant.json"
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> dict[str, Any]:
        db = create_database(settings.resolved_database_url)
        try:
            await upgrade(db)
            if path.exists():
                return json.loads(path.read_text())
            master = load_master_key(settings.master_key, settings.master_key_path)
            async with db.write() as conn:
                pair = await create_merchant(conn, master, name="Demo Shop", origins=origins)
        finally:
            await db.dispose()
        creds = {"merchantId": pair.merchant_id, "apiKey": pair.api_key, "signingSecret": pair.signing_secret}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f, indent=2)
        return creds

    return asyncio.run(run())


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.procs import ServiceProcess, gateway_command

    data_dir = settings.data_dir.resolve()
    storefront_origin = f"http://127.0.0.1:{args.storefront_port}"
    creds = ensure_demo_merchant(settings, [storefront_origin, f"http://localhost:{args.storefront_port}"])
    logs = data_dir / "logs"
    simulator = ServiceProcess(
        lambda fd: [sys.executable, "-m", "paygate_server.simulator", "--fd", str(fd),
                    "--store", str(data_dir / "simulator.db"), "--log-level", "warning"],
        log_path=logs / "simulator.log", port=args.simulator_port,
    )
    gateway = ServiceProcess(
        lambda fd: gateway_command(fd),
        log_path=logs / "gateway.log", port=args.port,
        env={"PAYGATE_DATA_DIR": str(data_dir), "PAYGATE_PROCESSOR_URL": simulator.base_url,
             "PAYGATE_WEBHOOK_ALLOW_PRIVATE": "1",
             "PAYGATE_PUBLIC_URL": f"http://127.0.0.1:{args.port}"},
    )
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        simulator.start()
        gateway.start()
        print(f"""
paygate demo is running (data in {data_dir}; logs in {logs})

  gateway    {gateway.base_url}     (API: {gateway.base_url}/api/v1, OpenAPI: {gateway.base_url}/api/v1/openapi.json)
  simulator  {simulator.base_url}     (the card processor stand-in)

demo merchant {creds['merchantId']}
  PAYGATE_API_KEY={creds['apiKey']}
  PAYGATE_SIGNING_SECRET={creds['signingSecret']}

test cards (any future expiry, any CVC):
{TEST_CARDS}

Press Ctrl-C to stop.""", flush=True)
        while not stopped.wait(0.5):
            for proc in (simulator, gateway):
                if proc.proc is not None and proc.proc.poll() is not None:
                    print(f"paygate demo: {proc.log_path.name} exited; see {proc.log_path}", file=sys.stderr)
                    stopped.set()
    finally:
        gateway.close()
        simulator.close()
        print("paygate demo stopped.")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("demo", help="gateway + simulator on localhost with a demo merchant")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--simulator-port", type=int, default=8081)
    p.add_argument("--storefront-port", type=int, default=8082)
    p.set_defaults(func=cmd_demo)


