"""The ``paygate`` command line (SPEC §9).

Every command reads configuration from ``PAYGATE_*`` variables. Operator mistakes end with
a one-line message and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from typing import Any, Awaitable, Callable, Sequence

from paygate_server.config import Settings
from paygate_server.crypto import load_master_key
from paygate_server.db import Database, SchemaMismatch, check_schema, create_database, upgrade
from paygate_server.merchants import MerchantError, create_key, create_merchant, revoke_key
from paygate_server.private_files import private_dir, use_private_umask

__all__ = ["main", "CommandError", "CLI_EXTENSIONS"]


class CommandError(Exception):
    """An operator-facing failure: printed as one line, exit status 2."""


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload))
    else:
        print(text)


async def _with_db(settings: Settings, fn: Callable[[Database], Awaitable[Any]], *, check: bool = True) -> Any:
    db = create_database(settings.resolved_database_url)
    try:
        if check:
            await check_schema(db)
        return await fn(db)
    finally:
        await db.dispose()


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    private_dir(settings.data_dir)
    before, after = asyncio.run(_with_db(settings, upgrade, check=False))
    _emit(args, {"from": before, "to": after},
          f"database schema: {before or 'empty'} -> {after}" if before != after else f"database schema is current ({after})")


def cmd_merchants_create(args: argparse.Namespace, settings: Settings) -> None:
    master = load_master_key(settings.master_key, settings.master_key_path)

    async def run(db: Database) -> Any:
        async with db.write() as conn:
            return await create_merchant(conn, master, name=args.name, origins=args.origin or [], live=args.live)

    pair = asyncio.run(_with_db(settings, run))
    _emit(args, {"merchantId": pair.merchant_id, "apiKey": pair.api_key, "signingSecret": pair.signing_secret},
          f"merchant:       {pair.merchant_id}\napi key:        {pair.api_key}\n"
          f"signing secret: {pair.signing_secret}\n(the signing secret is shown only now: store it safely)")


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> None:
    master = load_master_key(settings.master_key, settings.master_key_path)

    async def run(db: Database) -> Any:
        async with db.write() as conn:
            return await create_key(conn, master, args.merchant, live=args.live)

    pair = asyncio.run(_with_db(settings, run))
    _emit(args, {"merchantId": pair.merchant_id, "apiKey": pair.api_key, "signingSecret": pair.signing_secret},
          f"api key:        {pair.api_key}\nsigning secret: {pair.signing_secret}\n"
          "(the signing secret is shown only now: store it safely)")


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> None:
    async def run(db: Database) -> None:
        async with db.write() as conn:
            await revoke_key(conn, args.merchant, args.key)

    asyncio.run(_with_db(settings, run))
    _emit(args, {"merchantId": args.merchant, "apiKey": args.key, "revoked": True}, f"revoked {args.key}")


def cmd_keys_rotate_card_key(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cards.keystore import rotate_card_key

    master = load_master_key(settings.master_key, settings.master_key_path)
    retired, kid = asyncio.run(_with_db(settings, lambda db: rotate_card_key(db, master, bits=settings.card_key_bits)))
    _emit(args, {"kid": kid, "retired": retired},
          f"new checkout key {kid}; retired {', '.join(retired) or 'none'} (retired keys keep decrypting for 25 h)")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from paygate_server.http.protocol import CoalescingHttpToolsProtocol

    asyncio.run(_with_db(settings, lambda db: asyncio.sleep(0)))  # refuse a wrong schema up front
    uvicorn.run(
        "paygate_server.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        fd=args.fd,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        server_header=False,
        # One send per response (see paygate_server.http.protocol).
        http=CoalescingHttpToolsProtocol,
        # Nothing in the gateway reads the client's address, so X-Forwarded-For need not be
        # parsed on every request.
        proxy_headers=False,
    )


def cmd_simulator(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.simulator import serve

    private_dir(settings.data_dir)
    store = args.store or str(settings.data_dir / "simulator.db")
    serve(host=args.host, port=args.port, store_path=store)


# Domains add their sub-commands: each module defines ``add_commands(subparsers)``.
CLI_EXTENSIONS: tuple[str, ...] = (
    "paygate_server.cdc.cli", "paygate_server.webhooks.cli",
    "paygate_server.vault.cli",
    "paygate_server.demo",
    "paygate_server.bench",
    "paygate_server.processing.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paygate", description="paygate payment gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply schema migrations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_db_upgrade)

    merchants = sub.add_parser("merchants", help="merchants").add_subparsers(dest="merchants_command", required=True)
    p = merchants.add_parser("create", help="create a merchant and its first key pair")
    p.add_argument("--name", required=True)
    p.add_argument("--origin", action="append", help="an allowed checkout origin (repeatable)")
    p.add_argument("--live", action="store_true", help="a live key pair (pk_live_/sk_live_)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_merchants_create)

    keys = sub.add_parser("keys", help="API key pairs").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="add a key pair to a merchant (rotation)")
    p.add_argument("--merchant", required=True)
    p.add_argument("--live", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("revoke", help="revoke a key pair")
    p.add_argument("--merchant", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_revoke)
    p = keys.add_parser("rotate-card-key", help="new checkout (JWE) key; the old one keeps decrypting for 25 h")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_rotate_card_key)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("simulator", help="run the processor simulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--store", help="the simulator's SQLite file (default: $PAYGATE_DATA_DIR/simulator.db)")
    p.set_defaults(func=cmd_simulator)

    for name in CLI_EXTENSIONS:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    use_private_umask()  # the data directory's files, logs and archives: owner only
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        args.func(args, settings)
    except (CommandError, MerchantError, SchemaMismatch, ValueError) as exc:
        print(f"paygate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"paygate: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0

