"""``paygate history prune [--dry-run]``, ``paygate history forget-consumer NAME`` and
``paygate history resume-after-restore``."""
from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from paygate_server.cli import CommandError, emit, run_with_db
from paygate_server.config import Settings

if TYPE_CHECKING:
    from paygate_server.storage import Database

__all__ = ["add_commands"]


async def _prune(args: argparse.Namespace, settings: Settings) -> Any:
    from paygate_server.cdc.cli import database_and_archive
    from paygate_server.cdc.prune import HistoryPruner

    async with database_and_archive(settings) as (db, store):
        return await HistoryPruner(db, store, settings).run(dry_run=args.dry_run)


def cmd_history_prune(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cdc.cli import _archive_errors
    from paygate_server.storage.history_prune import PruneMoved

    try:
        report = asyncio.run(_prune(args, settings))
    except _archive_errors() as exc:
        raise CommandError(f"cannot read the archive: {exc}") from None
    except PruneMoved as exc:
        raise CommandError(f"pruning stopped: {exc}") from None
    print(json.dumps(report.to_json()) if args.json else report.text())


def configured_consumers(settings: Settings) -> list[str]:
    """The relay consumers this configuration runs: the archive and webhooks always, the
    broker when ``PAYGATE_BROKER_URL`` is set."""
    from paygate_server.cdc.archive import ArchiveSink
    from paygate_server.cdc.broker import BrokerSink
    from paygate_server.webhooks.events import WebhookConsumer

    return [ArchiveSink.name, WebhookConsumer.name, *([BrokerSink.name] if settings.broker_url else [])]


async def _forget(db: Database, consumer: str) -> bool:
    """Drop ``consumer``'s offset under its lease: refused while a relay holds it (it runs
    the consumer, whatever this command's configuration says), and no relay starts it
    meanwhile. Only a consumer with an offset is looked at (a relay named it)."""
    from paygate_server.storage.history_prune import HistoryPruneStore
    from paygate_server.storage.relay_leases import ConsumerLease

    store = HistoryPruneStore(db)
    if consumer not in await store.consumers():
        return False
    lease = ConsumerLease(db, consumer)
    if not await lease.acquire():
        raise CommandError(f"relay consumer {consumer} is running (a relay holds its lease): forgetting it would"
                           " let pruning delete changes it has not been delivered")
    try:
        return await store.forget_consumer(consumer)
    finally:
        await lease.release()


def cmd_history_forget_consumer(args: argparse.Namespace, settings: Settings) -> None:
    if args.consumer in configured_consumers(settings):
        # Its offset gone, pruning would stop waiting for it (and a running relay's offset
        # writes would match no row): changes it has not delivered could leave the database.
        raise CommandError(f"relay consumer {args.consumer} is configured: forgetting it would let pruning delete"
                           " changes it has not been delivered; forget only a consumer no longer configured")
    if not run_with_db(settings, lambda db: _forget(db, args.consumer)):
        raise CommandError(f"no relay consumer named {args.consumer} has an offset")
    emit(args, {"forgotten": args.consumer}, f"forgot relay consumer {args.consumer}: it no longer holds back pruning")


async def _resume(settings: Settings) -> Any:
    from paygate_server.cdc.cli import database_and_archive
    from paygate_server.cdc.restore import resume_after_restore

    async with database_and_archive(settings) as (db, store):
        return await resume_after_restore(db, store)


def cmd_history_resume_after_restore(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cdc.cli import _archive_errors
    from paygate_server.cdc.restore import NothingToResume, ResumeRefused

    try:
        report = asyncio.run(_resume(settings))
    except _archive_errors() as exc:
        raise CommandError(f"cannot read the archive: {exc}") from None
    except (NothingToResume, ResumeRefused) as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(report.to_json()) if args.json else report.text())


def add_commands(sub: Any) -> None:
    history = sub.add_parser("history", help="the change log in the database: retention").add_subparsers(
        dest="history_command", required=True)
    p = history.add_parser("prune", help="delete archived, verified change-log rows past retention")
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history_prune)
    p = history.add_parser("forget-consumer",
                           help="drop the offset of a relay consumer no longer configured (it blocks pruning)")
    p.add_argument("consumer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history_forget_consumer)
    p = history.add_parser("resume-after-restore",
                           help="after restoring the database from a backup older than the archive: go on after"
                                " the archive's changes, recording those the restore lost")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history_resume_after_restore)
