"""``paygate demo``: the gateway, the processor simulator and the sample storefront on
localhost, with a demo merchant.

The merchant's credentials, its webhook endpoint (pointing at the storefront's receiver)
and the storefront's admin password are kept in ``$PAYGATE_DATA_DIR/demo-merchant.json``
(mode 0600), so data, keys and the endpoint survive restarts. The operator console runs
too, with a demo admin (``demo@paygate.local``) whose generated password is kept in
``demo-operator.json`` (mode 0600). Every port may be ``0``
(the OS picks one); the URLs printed are the real ones.

The storefront is an example, not part of the ``paygate`` wheel: it is run from the
source tree's ``examples/storefront`` (put on ``PYTHONPATH``), or from an installed
``storefront`` package. Without either, the demo runs the gateway and simulator alone.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paygate_server.cli_parser import port_number
from paygate_server.config import Settings
from paygate_server.private_files import private_dir, private_temp_file

if TYPE_CHECKING:
    from paygate_server.procs import ServiceProcess

__all__ = ["add_commands", "ensure_demo_merchant", "ensure_demo_operator", "ensure_demo_webhook", "find_storefront"]

SHOP_NAME = "Tidewater Coffee"
DEMO_OPERATOR = "demo@paygate.local"
WEBHOOK_PATH = "/webhooks/paygate"
TEST_CARDS = """\
  4242 4242 4242 4242   approved (Visa)        4000 0000 0000 9995   declined: insufficient funds
  5555 5555 5555 4444   approved (Mastercard)  4000 0000 0000 0002   declined: generic
  4000 0000 0000 1026   approved, but the answer is lost: "processing" until the reconciler settles it
  any future expiry (e.g. 12 / 34), any CVC, any name"""


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``data``, readable by the owner only."""
    fd, tmp = private_temp_file(path)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def _read_saved(path: Path, *keys: str) -> dict[str, Any] | None:
    """What the demo saved in ``path``, None if there is nothing usable: no file, or one
    that is not a JSON object with a string at each of ``keys`` (edited by hand, or left by
    something else). Once, ``{}`` or ``[]`` there was a KeyError or TypeError traceback from
    `paygate demo`, and text that is no JSON a line that named no file."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, RecursionError):  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return None
    if not isinstance(saved, dict) or not all(isinstance(saved.get(key), str) for key in keys):
        return None
    return {key: value for key, value in saved.items() if isinstance(value, str)}  # (the demo writes strings)


def ensure_demo_merchant(settings: Settings, origins: list[str]) -> dict[str, Any]:
    """The demo merchant, created on first run; its allowed origins are topped up when the
    storefront moves to another port. Returns the contents of ``demo-merchant.json``."""
    from paygate_server.cli import open_database
    from paygate_server.master_key import database_master_key
    from paygate_server.merchants import allow_origins, create_merchant, get_merchant
    from paygate_server.storage import upgrade

    path = settings.data_dir / "demo-merchant.json"
    private_dir(settings.data_dir)

    async def run() -> dict[str, Any]:
        async with open_database(settings, check=False) as db:
            await upgrade(db)
            saved = _read_saved(path, "merchantId", "apiKey", "signingSecret")
            if saved is not None:
                async with db.write() as conn:
                    if await get_merchant(conn, saved["merchantId"]) is not None:
                        await allow_origins(conn, saved["merchantId"], origins)
                        return dict(saved)
                # The database was reset but the file was not: start over.
            master = await database_master_key(settings, db)
            async with db.write() as conn:
                pair = await create_merchant(conn, master, name=SHOP_NAME, origins=origins)
        creds = {"merchantId": pair.merchant_id, "apiKey": pair.api_key, "signingSecret": pair.signing_secret}
        _write_private(path, creds)
        return creds

    return asyncio.run(run())


def ensure_demo_operator(settings: Settings) -> dict[str, str]:
    """The console's demo admin, created on first run (the database already upgraded);
    returns the contents of ``demo-operator.json`` (its email and password)."""
    from paygate_server.cli import open_database
    from paygate_server.console.accounts import Accounts

    path = settings.data_dir / "demo-operator.json"

    async def run() -> dict[str, str]:
        async with open_database(settings) as db:
            accounts = Accounts(db)
            saved = _read_saved(path, "email", "password")
            existing = await accounts.find(DEMO_OPERATOR)
            if saved is not None and existing is not None and existing.disabled_at is None:
                return {"email": str(saved["email"]), "password": str(saved["password"])}
            if existing is not None:  # the file is gone or the account disabled: say so, do not guess
                return {"email": DEMO_OPERATOR, "password": "(unknown: see paygate operators create)"}
            password = secrets.token_urlsafe(15)
            await accounts.create(DEMO_OPERATOR, "admin", password)
        login = {"email": DEMO_OPERATOR, "password": password}
        _write_private(path, login)
        return login

    return asyncio.run(run())


def ensure_demo_webhook(settings: Settings, creds: dict[str, Any], gateway_url: str, url: str) -> dict[str, Any]:
    """The demo merchant's webhook endpoint for ``url``, created once through the API (with
    the SDK, as a merchant would) and remembered with its secret in ``demo-merchant.json``.
    An endpoint for another URL (the storefront moved) is replaced."""
    import paygate

    with paygate.Client(creds["apiKey"], creds["signingSecret"], gateway_url) as client:
        existing = {endpoint.id: endpoint for endpoint in client.webhook_endpoints.list()}
        current = existing.get(creds.get("webhookEndpointId") or "")
        if current is not None and current.url == url and creds.get("webhookSecret"):
            return creds
        if current is not None:
            client.webhook_endpoints.delete(current.id)
        endpoint = client.webhook_endpoints.create(url)
    creds = {**creds, "webhookEndpointId": endpoint.id, "webhookUrl": url, "webhookSecret": endpoint.secret}
    _write_private(settings.data_dir / "demo-merchant.json", creds)
    return creds


def find_storefront() -> str | None:
    """Where ``python -m storefront`` can be run from: the source tree's
    ``examples/storefront`` (returned, for ``PYTHONPATH``), ``""`` if a ``storefront``
    package is installed, or None."""
    candidates = [os.environ.get("PAYGATE_DEMO_STOREFRONT_DIR", ""),
                  str(Path(__file__).resolve().parents[2] / "examples" / "storefront")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "storefront" / "__main__.py").is_file():
            return str(Path(candidate).resolve())
    return "" if importlib.util.find_spec("storefront") is not None else None


def _admin_password(settings: Settings, creds: dict[str, Any]) -> str:
    password = os.environ.get("STOREFRONT_ADMIN_PASSWORD") or creds.get("adminPassword")
    if not password:
        password = secrets.token_urlsafe(9)
        creds["adminPassword"] = password
        _write_private(settings.data_dir / "demo-merchant.json", creds)
    return str(password)


def _listen(option: str, port: int, command: Callable[[int], list[str]], log_path: Path,
            env: dict[str, str] | None = None) -> ServiceProcess:
    """Bind one of the demo's sockets; a port in use is the usual mistake (another demo, or
    another server), so say which port and which option moves it."""
    from paygate_server.cli import port_taken
    from paygate_server.procs import ServiceProcess

    try:
        return ServiceProcess(command, log_path=log_path, port=port, env=env)
    except OSError as exc:
        raise port_taken("127.0.0.1", port, option, exc) from None


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.procs import console_command, gateway_command, simulator_command

    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    storefront_dir = find_storefront()
    # Every socket is bound first, so the ports (maybe OS-chosen) are known before anything
    # starts: the merchant's origins and the webhook URL need the storefront's.
    simulator = _listen("--simulator-port", args.simulator_port,
                        lambda fd: simulator_command(fd, data_dir / "simulator.db"), logs / "simulator.log")
    services = [simulator]
    try:
        gateway = _listen("--port", args.port, gateway_command, logs / "gateway.log",
                          env={"PAYGATE_DATA_DIR": str(data_dir), "PAYGATE_PROCESSOR_URL": simulator.base_url,
                               "PAYGATE_WEBHOOK_ALLOW_PRIVATE": "1"})
        services.append(gateway)
        console = _listen("--console-port", args.console_port, console_command, logs / "console.log",
                          env={"PAYGATE_DATA_DIR": str(data_dir), "PAYGATE_PROCESSOR_URL": simulator.base_url})
        services.append(console)
        storefront: ServiceProcess | None = None
        if storefront_dir is not None:
            storefront = _listen(
                "--storefront-port", args.storefront_port,
                lambda fd: [sys.executable, "-m", "storefront", "--fd", str(fd), "--log-level", "warning"],
                logs / "storefront.log")
            services.append(storefront)
    except BaseException:
        for proc in services:
            proc.close()  # the sockets already bound
        raise
    shop_port = storefront.port if storefront is not None else args.storefront_port
    creds = ensure_demo_merchant(settings, [f"http://127.0.0.1:{shop_port}", f"http://localhost:{shop_port}"])
    operator = ensure_demo_operator(settings)

    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        simulator.start()
        gateway.start()
        console.start()
        shop_lines = "  storefront (not found: run the demo from a source checkout to get the sample shop)"
        if storefront is not None:
            creds = ensure_demo_webhook(settings, creds, gateway.base_url, storefront.base_url + WEBHOOK_PATH)
            password = _admin_password(settings, creds)
            python_path = os.pathsep.join(p for p in (storefront_dir, os.environ.get("PYTHONPATH")) if p)
            storefront.env.update({
                "PYTHONPATH": python_path,
                "STOREFRONT_GATEWAY_URL": gateway.base_url,
                "STOREFRONT_API_KEY": creds["apiKey"],
                "STOREFRONT_SIGNING_SECRET": creds["signingSecret"],
                "STOREFRONT_WEBHOOK_SECRET": creds["webhookSecret"],
                "STOREFRONT_DATA_DIR": str(data_dir / "storefront"),
                "STOREFRONT_ADMIN_PASSWORD": password,
            })
            storefront.start()
            shop_lines = (f"  shop       {storefront.base_url}/\n"
                          f"  admin      {storefront.base_url}/admin     (password: {password})")
        print(f"""
paygate demo is running (data in {data_dir}; logs in {logs})

{shop_lines}
  gateway    {gateway.base_url}     (API: {gateway.base_url}/api/v1, OpenAPI: {gateway.base_url}/api/v1/openapi.json)
  simulator  {simulator.base_url}     (the card processor stand-in)
  console    {console.base_url}/     (operator console: {operator['email']} / {operator['password']})

demo merchant {creds['merchantId']}
  PAYGATE_BASE_URL={gateway.base_url}
  PAYGATE_API_KEY={creds['apiKey']}
  PAYGATE_SIGNING_SECRET={creds['signingSecret']}
  webhook endpoint {creds.get('webhookEndpointId', '(none)')} -> {creds.get('webhookUrl', '(none)')}

test cards:
{TEST_CARDS}

Press Ctrl-C to stop.""", flush=True)
        while not stopped.wait(0.5):
            for proc in services:
                if proc.proc is not None and proc.proc.poll() is not None:
                    print(f"paygate demo: {proc.log_path.stem} exited; see {proc.log_path}", file=sys.stderr)
                    stopped.set()
    finally:
        for proc in reversed(services):
            proc.close()
        print("paygate demo stopped.", flush=True)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("demo", help="gateway + simulator + sample storefront on localhost, with a demo merchant")
    p.add_argument("--port", type=port_number, default=8080, help="the gateway's port (0: any free port)")
    p.add_argument("--simulator-port", type=port_number, default=8081)
    p.add_argument("--storefront-port", type=port_number, default=8082)
    p.add_argument("--console-port", type=port_number, default=8083, help="the operator console's port")
    p.set_defaults(func=cmd_demo)
