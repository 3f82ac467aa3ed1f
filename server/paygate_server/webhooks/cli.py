"""``paygate webhooks create|list|deliveries|replay|prune``."""
from __future__ import annotations

import argparse
from typing import Any

from paygate_server.cli import CommandError, emit, require_merchant, run_with_db
from paygate_server.cli_parser import whole_number
from paygate_server.config import Settings

__all__ = ["add_commands"]

MAX_LIMIT = 10_000  # deliveries one listing shows


def cmd_create(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.errors import ApiError
    from paygate_server.master_key import database_master_key
    from paygate_server.webhooks import model
    from paygate_server.webhooks.endpoints import parse_events, validate_url

    async def run(db: Any) -> dict[str, Any]:
        master = await database_master_key(settings, db)
        async with db.read() as conn:  # an unknown merchant first, before any DNS look-up
            await require_merchant(conn, args.merchant)
        try:
            events = parse_events(args.event)
            await validate_url(args.url, allow_private=settings.webhook_allow_private)
            async with db.write() as conn:
                endpoint, secret = await model.create_endpoint(conn, master, args.merchant, args.url, events)
        except ApiError as exc:
            raise CommandError(exc.message) from None
        return model.render_endpoint(endpoint, secret)

    endpoint = run_with_db(settings, run)
    emit(args, endpoint, f"webhook endpoint: {endpoint['webhookEndpointId']}\nurl:              {endpoint['url']}\n"
                          f"events:           {', '.join(endpoint['events'])}\nsecret:           {endpoint['secret']}\n"
                          "(the secret is shown only now: store it safely)")


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.storage.webhook_endpoints import list_endpoints
    from paygate_server.webhooks.model import render_endpoint

    async def run(db: Any) -> list[dict[str, Any]]:
        async with db.read() as conn:
            await require_merchant(conn, args.merchant)
            return [render_endpoint(e) for e in await list_endpoints(conn, args.merchant)]

    endpoints = run_with_db(settings, run)
    emit(args, {"data": endpoints}, "\n".join(
        f"{e['webhookEndpointId']}  {e['status']:<8}  {e['url']}  ({', '.join(e['events'])})" for e in endpoints)
        or "no webhook endpoints")


def cmd_deliveries(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.storage.webhook_deliveries import DeliveryQueue
    from paygate_server.webhooks.model import render_delivery

    async def run(db: Any) -> list[dict[str, Any]]:
        if args.merchant is not None:
            async with db.read() as conn:
                await require_merchant(conn, args.merchant)
        return [render_delivery(d) for d in await DeliveryQueue(db).recent(
            status=args.status, merchant_id=args.merchant, limit=args.limit)]

    rows = run_with_db(settings, run)
    emit(args, {"data": rows}, "\n".join(
        f"{d['eventId']}  {d['webhookEndpointId']}  {d['status']:<9}  attempts={d['attempts']}  "
        f"last={d['lastStatusCode'] or d['lastError'] or '-'}" for d in rows) or "no deliveries")


def cmd_replay(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.clock import now_us
    from paygate_server.storage.webhook_deliveries import DeliveryQueue

    if not (args.all or args.endpoint or args.event or args.merchant):
        raise CommandError("say which failed deliveries to replay: --endpoint, --event, --merchant or --all")

    async def run(db: Any) -> int:
        from paygate_server.storage.webhook_endpoints import merchant_of_endpoint
        from paygate_server.storage.webhook_events import merchant_of_event

        async with db.read() as conn:
            if args.merchant is not None:
                await require_merchant(conn, args.merchant)
            # An id that names nothing (or another merchant's) is a typo, not "0 to replay".
            for given, what, merchant_of in ((args.endpoint, "webhook endpoint", merchant_of_endpoint),
                                             (args.event, "event", merchant_of_event)):
                if given is None:
                    continue
                owner = await merchant_of(conn, given)
                if owner is None or (args.merchant is not None and owner != args.merchant):
                    of = f" of merchant {args.merchant}" if args.merchant is not None else ""
                    raise CommandError(f"no {what} {given[:80]}{of}")
        return await DeliveryQueue(db).replay_failed(now_us(), merchant_id=args.merchant, endpoint_id=args.endpoint,
                                                     event_id=args.event)

    count = run_with_db(settings, run)
    emit(args, {"replayed": count}, f"{count} failed deliveries scheduled again")


def cmd_prune(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.clock import now_us
    from paygate_server.storage.webhook_prune import count_prunable
    from paygate_server.webhooks.retention import prune, retention_start

    now = now_us()

    async def run(db: Any) -> dict[str, Any]:
        if args.dry_run:
            deliveries, events = await count_prunable(db, retention_start(settings, now))
            return {"deliveries": deliveries, "events": events, "dryRun": True}
        done = await prune(db, settings, now)
        return {"deliveries": done.deliveries, "events": done.events, "dryRun": False}

    result = run_with_db(settings, run)
    days = settings.webhook_retention_s / 86_400
    verb = "would delete" if args.dry_run else "deleted"
    emit(args, {**result, "retentionS": settings.webhook_retention_s},
         f"{verb} {result['deliveries']} finished deliveries and {result['events']} events"
         f" older than {days:g} days (PAYGATE_WEBHOOK_RETENTION_S)")


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
    p.add_argument("--limit", type=whole_number(1, MAX_LIMIT), default=100, help=f"at most {MAX_LIMIT} (default 100)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deliveries)
    p = webhooks.add_parser("replay", help="send failed deliveries again (re-enables their endpoints)")
    p.add_argument("--endpoint", help="we_…")
    p.add_argument("--event", help="evt_…")
    p.add_argument("--merchant")
    p.add_argument("--all", action="store_true", help="every failed delivery")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)
    p = webhooks.add_parser("prune", help="delete deliveries and events older than the retention, now")
    p.add_argument("--dry-run", action="store_true", help="count them, delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_prune)
