"""``paygate webhooks create|list|deliveries|replay``."""
from __future__ import annotations

import argparse
import json
from typing import Any

from paygate_server.cli import CommandError, require_merchant, run_with_db
from paygate_server.config import Settings

__all__ = ["add_commands"]


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload) if args.json else text)


def cmd_create(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.crypto import load_master_key
    from paygate_server.errors import ApiError
    from paygate_server.webhooks import repository as repo
    from paygate_server.webhooks.endpoints import parse_events, validate_url

    async def run(db: Any) -> dict[str, Any]:
        master = load_master_key(settings.master_key, settings.master_key_path)
        async with db.read() as conn:  # an unknown merchant first, before any DNS look-up
            await require_merchant(conn, args.merchant)
        try:
            events = parse_events(args.event)
            await validate_url(args.url, allow_private=settings.webhook_allow_private)
        except ApiError as exc:
            raise CommandError(exc.message) from None
        async with db.write() as conn:
            if await repo.count_active(conn, args.merchant) >= repo.MAX_ENDPOINTS:
                raise CommandError(f"a merchant has at most {repo.MAX_ENDPOINTS} webhook endpoints")
            row, secret = await repo.insert_endpoint(conn, master, args.merchant, args.url, events)
        return repo.render_endpoint(row, secret)

    endpoint = run_with_db(settings, run)
    _emit(args, endpoint, f"webhook endpoint: {endpoint['webhookEndpointId']}\nurl:              {endpoint['url']}\n"
                          f"events:           {', '.join(endpoint['events'])}\nsecret:           {endpoint['secret']}\n"
                          "(the secret is shown only now: store it safely)")


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.webhooks import repository as repo

    async def run(db: Any) -> list[dict[str, Any]]:
        async with db.read() as conn:
            await require_merchant(conn, args.merchant)
            return [repo.render_endpoint(r) for r in await repo.list_endpoints(conn, args.merchant)]

    endpoints = run_with_db(settings, run)
    _emit(args, {"data": endpoints}, "\n".join(
        f"{e['webhookEndpointId']}  {e['status']:<8}  {e['url']}  ({', '.join(e['events'])})" for e in endpoints)
        or "no webhook endpoints")


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.webhooks import repository as repo

    async def run(db: Any) -> list[dict[str, Any]]:
        async with db.read() as conn:
            if args.merchant is not None:
                await require_merchant(conn, args.merchant)
            return await repo.list_deliveries(conn, status=args.status, merchant_id=args.merchant, limit=args.limit)

    rows = run_with_db(settings, run)
    _emit(args, {"data": rows}, "\n".join(
        f"{d['eventId']}  {d['webhookEndpointId']}  {d['status']:<9}  attempts={d['attempts']}  "
        f"last={d['lastStatusCode'] or d['lastError'] or '-'}" for d in rows) or "no deliveries")


def cmd_replay(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.webhooks import repository as repo

    if not (args.all or args.endpoint or args.event or args.merchant):
        raise CommandError("say which failed deliveries to replay: --endpoint, --event, --merchant or --all")

    async def run(db: Any) -> int:
        async with db.write() as conn:
            if args.merchant is not None:
                await require_merchant(conn, args.merchant)
            return await repo.replay_failed(conn, merchant_id=args.merchant, endpoint_id=args.endpoint,
                                            event_id=args.event)

    count = run_with_db(settings, run)
    _emit(args, {"replayed": count}, f"{count} failed deliveries scheduled again")


def add_commands(sub: Any) -> None:
    webhooks = sub.add_parser("webhooks", help="webhook endpoints and deliveries").add_subparsers(
        dest="webhooks_command", required=True)
    p = webhooks.add_parser("create", help="add a webhook endpoint to a merchant (its secret is shown once)")
    p.add_argument("--merchant", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--event", action="append", help="an event type to send (repeatable; default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_create)
    p = webhooks.add_parser("list", help="a merchant's webhook endpoints")
    p.add_argument("--merchant", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = webhooks.add_parser("deliveries", help="recent deliveries (e.g. --status failed)")
    p.add_argument("--status", choices=["pending", "delivered", "failed"])
    p.add_argument("--merchant")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deliveries)
    p = webhooks.add_parser("replay", help="send failed deliveries again (re-enables their endpoints)")
    p.add_argument("--endpoint", help="we_…")
    p.add_argument("--event", help="evt_…")
    p.add_argument("--merchant")
    p.add_argument("--all", action="store_true", help="every failed delivery")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)
