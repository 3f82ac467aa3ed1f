"""``paygate relay`` and ``paygate audit show|verify|reindex``."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from paygate_server.cli import CommandError, check_sessions, open_database
from paygate_server.cli_parser import DAY_S, seconds
from paygate_server.config import Settings

if TYPE_CHECKING:
    from paygate_server.cdc.store import ObjectStore
    from paygate_server.storage import Database

__all__ = ["add_commands", "database_and_archive"]


@contextlib.asynccontextmanager
async def database_and_archive(settings: Settings) -> AsyncIterator[tuple[Database, ObjectStore]]:
    """The database and the configured archive's store, for a command that reads both; the
    store is closed before the database."""
    from paygate_server.cdc.store import store_for

    async with open_database(settings) as db:
        store = store_for(settings)
        try:
            yield db, store
        finally:
            await store.close()


async def _run_relay(args: argparse.Namespace, settings: Settings) -> dict[str, int] | None:
    from paygate_server.app import EXTENSIONS, build_gateway
    from paygate_server.cdc.archive import ArchiveAhead, ArchiveProblem

    # A missing or unreachable database, a wrong schema, a lease that would go through a
    # pooler: one line, before anything starts.
    async with open_database(settings) as db:
        await check_sessions(settings, db)
    gateway = await build_gateway(settings)
    try:
        relay = gateway.relay
        if args.consumer:
            unknown = set(args.consumer) - {c.name for c in relay.consumers}
            if unknown:
                raise CommandError(f"no relay consumer named {', '.join(sorted(unknown))} "
                                   f"(have: {', '.join(c.name for c in relay.consumers)})")
            relay.consumers = [c for c in relay.consumers if c.name in args.consumer]
        if args.once:
            try:
                return await relay.drain(lease_timeout_s=args.lease_timeout)
            except TimeoutError as exc:
                raise CommandError(f"{exc} (is `paygate serve` running the relay? then --once is not needed)") from None
            except ArchiveAhead as exc:  # restored under a newer archive: its own line names the command
                raise CommandError(str(exc)) from None
            except ArchiveProblem as exc:  # e.g. another relay archived the same segment meanwhile
                raise CommandError(f"the archive: {exc}") from None
            except _archive_errors() as exc:  # an S3 archive that cannot be reached (once a traceback)
                raise CommandError(f"cannot reach the archive: {exc}") from None
            except _broker_errors() as exc:  # nor a broker (nats-py's NoServersError, once a traceback)
                raise CommandError(f"cannot reach the broker (PAYGATE_BROKER_URL): {exc}") from None
        await gateway.notifier.start()
        work = [relay.run_forever()]
        if gateway.has("webhook_dispatcher") and not args.no_dispatch:
            work.append(gateway.webhook_dispatcher.run_forever())
        main = asyncio.ensure_future(asyncio.gather(*work))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, main.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await main
        return None
    finally:
        for extension in EXTENSIONS:
            with contextlib.suppress(Exception):
                await extension.teardown(gateway)
        await gateway.notifier.stop()
        await gateway.db.dispose()


def cmd_relay(args: argparse.Namespace, settings: Settings) -> None:
    counts = asyncio.run(_run_relay(args, settings))
    if counts is not None:
        if args.json:
            print(json.dumps({"delivered": counts}))
        else:
            for name, n in counts.items():
                print(f"{name}: {n} changes delivered")


async def _verify(args: argparse.Namespace, settings: Settings) -> Any:
    from paygate_server.cdc.archive import ArchiveReader
    from paygate_server.cdc.audit import verify_archive

    async with database_and_archive(settings) as (db, store):
        deadline = time.monotonic() + args.wait
        while True:
            report = await verify_archive(db, ArchiveReader(store))
            if not report.ok or report.pending == 0 or time.monotonic() >= deadline:
                return report
            await asyncio.sleep(0.25)  # waiting for the relay to catch up, bounded by --wait


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What publishing to the broker raises when it cannot be reached (the `nats` extra)."""
    try:
        from nats.errors import Error
    except ImportError:
        return ()
    return (Error,)


def _archive_errors() -> tuple[type[BaseException], ...]:
    """What reading the archive raises when it cannot be read (answered in one line)."""
    import httpx

    from paygate_server.cdc.archive import ArchiveProblem
    from paygate_server.cdc.s3 import S3Error

    return (S3Error, httpx.HTTPError, ArchiveProblem)


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> None:
    try:
        report = asyncio.run(_verify(args, settings))
    except _archive_errors() as exc:
        raise CommandError(f"cannot read the archive: {exc}") from None
    failed = not report.ok or (args.wait > 0 and report.pending > 0)
    if args.json:
        print(json.dumps({**report.to_json(), "ok": not failed}))
    else:
        print(report.text() if not (report.ok and failed) else
              report.text() + f"\nFAILED: {report.pending} changes still not archived after {args.wait} s")
    if failed:
        sys.exit(1)


async def _show(args: argparse.Namespace, settings: Settings) -> Any:
    from paygate_server.cdc.timeline import HistoryGap, archived_timeline, whole_timeline
    from paygate_server.storage.change_log import ChangeLog

    async with database_and_archive(settings) as (db, store):
        if args.archive:
            return await archived_timeline(db, store, args.intent)
        changes = await whole_timeline(db, args.intent, store)
        if not changes and await ChangeLog(db).intent_exists(args.intent):
            # An intent without any history has lost it: it is not empty.
            raise HistoryGap(f"history of {args.intent} is incomplete:"
                             " in neither the database nor the archive's index")
        return changes


def cmd_audit_show(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cdc.audit import format_timeline
    from paygate_server.cdc.timeline import HistoryGap
    from paygate_server.intents.history import render_history

    if not args.intent.startswith("pi_"):
        raise CommandError(f"not a payment intent id: {args.intent}")
    try:
        changes = asyncio.run(_show(args, settings))
    except HistoryGap as exc:  # never a shortened history
        raise CommandError(str(exc)) from None
    except _archive_errors() as exc:
        raise CommandError(f"cannot read the archive: {exc}") from None
    if not changes:
        hint = " in the archive's index by intent (archived before it existed? `paygate audit reindex`)" if args.archive else ""
        raise CommandError(f"no history for {args.intent}{hint}")
    if args.json:
        print(json.dumps({"paymentIntentId": args.intent, "data": render_history(changes)}))
    else:
        print(format_timeline(args.intent, changes))


async def _reindex(settings: Settings) -> Any:
    from paygate_server.cdc.archive import ArchiveReader
    from paygate_server.cdc.index import reindex
    from paygate_server.storage.archive_index import ArchiveIndex

    async with database_and_archive(settings) as (db, store):
        return await reindex(ArchiveReader(store), ArchiveIndex(db))


def cmd_audit_reindex(args: argparse.Namespace, settings: Settings) -> None:
    try:
        report = asyncio.run(_reindex(settings))
    except _archive_errors() as exc:
        raise CommandError(f"cannot read the archive: {exc}") from None
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(f"{report.segments} segments: {report.indexed} indexed now ({report.intents} intents),"
              f" the others were already")
        for problem in report.problems:
            print(f"PROBLEM {problem}")
    if report.problems:
        sys.exit(1)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("relay", help="ship the change history to the archive, broker and webhooks")
    p.add_argument("--once", action="store_true", help="deliver what is committed now, then exit")
    p.add_argument("--consumer", action="append", help="only this consumer (repeatable)")
    p.add_argument("--no-dispatch", action="store_true", help="do not deliver webhooks from this process")
    p.add_argument("--lease-timeout", type=seconds(DAY_S), default=30.0,
                   help="with --once: how long to wait for a consumer another relay holds")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_relay)

    audit = sub.add_parser("audit", help="the durable change history").add_subparsers(
        dest="audit_command", required=True)
    p = audit.add_parser("verify", help="prove the archive holds every change the database holds")
    p.add_argument("--wait", type=seconds(DAY_S), default=0.0,
                   help="wait up to S seconds for the relay to archive everything; then lag is a failure")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("show", help="an intent's timeline")
    p.add_argument("intent", metavar="pi_…")
    p.add_argument("--archive", action="store_true", help="the archive's copy, found through the index by intent (not the database's rows)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_show)
    p = audit.add_parser("reindex", help="index by intent the segments the index does not cover (archived before it existed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit_reindex)
