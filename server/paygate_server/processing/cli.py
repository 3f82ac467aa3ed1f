"""``paygate reconcile`` and ``paygate reconcile settlement --date D`` (SPEC §7, §9)."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from paygate_server.cli import CommandError, open_database
from paygate_server.config import Settings

if TYPE_CHECKING:
    from paygate_server.processors.registry import ProcessorRoutes
    from paygate_server.storage import Database

# The reconciler, the connectors and the database engine are imported by the commands that
# run them, not with this module: `paygate --help` imports it too.

__all__ = ["add_commands"]


def _timeouts(settings: Settings) -> dict[str, Any]:
    return {"connect_timeout": settings.processor_connect_timeout_s, "read_timeout": settings.processor_timeout_s}


def _connector(settings: Settings) -> Any:
    from paygate_server.processing.connectors import connector_for_url

    return connector_for_url(settings.processor_url, **_timeouts(settings))


async def _processors(settings: Settings, db: Database) -> ProcessorRoutes:
    from paygate_server.master_key import database_master_key
    from paygate_server.processors.registry import ProcessorRoutes

    """The merchants' processor accounts, so that every operation is asked about where it went."""
    master = await database_master_key(settings, db)
    return ProcessorRoutes(db, master, cache_ttl_s=settings.key_cache_ttl_s, **_timeouts(settings))


def _print_unresolved(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        return
    if not items:
        print("nothing unresolved")
        return
    print(f"{len(items)} unresolved (the processor's answer is not known yet):")
    print(f"  {'kind':7} {'id':34} {'intent':32} {'checks':>6}  {'since':24} last result")
    for item in items:
        print(f"  {item['kind']:7} {item['id']:34} {item['paymentIntentId']:32} {item['checks']:>6}  "
              f"{item['since']:24} {item['lastResult'] or '-'}")


def _print_late(items: list[dict[str, Any]]) -> None:
    if not items:
        return
    print(f"{len(items)} settled outcome(s) the processor contradicted later (the gateway's status stays; "
          "see docs/operations.md, Reconciliation):")
    print(f"  {'kind':7} {'id':34} {'intent':32} {'gateway':9} {'processor':9} {'received':24} processor's text")
    for item in items:
        print(f"  {item['kind']:7} {item['objectId']:34} {item['paymentIntentId']:32} {item['gatewayStatus']:9} "
              f"{item['processorStatus']:9} {item['receivedAt']:24} {_printable(item['processorText'] or '-')}")


def _printable(text: str) -> str:
    """The processor's words, with nothing that would drive the operator's terminal."""
    return "".join(c if c.isprintable() else "?" for c in text)


async def _run_forever(settings: Settings, db: Database, connector: Any, processors: ProcessorRoutes,
                       as_json: bool) -> None:
    """The standalone reconciler: event-driven like the gateway's own (SPEC §7) — every
    committed change, whichever process made it, wakes it to look at what is due — with the
    periodic sweep as the safety net. Without the change stream it would only notice a new
    unknown outcome at its next sweep. It lists what is unresolved when it starts (``--json``:
    as one JSON object, like ``--once``'s; the log goes to standard error)."""
    from paygate_server.processing.reconciler import Reconciler, list_late_outcomes, list_unresolved
    from paygate_server.realtime import ChangeNotifier
    from paygate_server.storage import open_payment_store

    store = open_payment_store(db)
    notifier = ChangeNotifier(db, poll_interval_s=settings.change_poll_interval_s)
    await notifier.start()  # listening before the first pass: no change after it is missed
    try:
        reconciler = Reconciler(store, connector, settings, notifier, processors)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        unresolved, late = await list_unresolved(store), await list_late_outcomes(store)
        if as_json:
            print(json.dumps({"unresolved": unresolved, "lateOutcomes": late}), flush=True)
        else:
            _print_unresolved(unresolved, False)
            _print_late(late)
            print("reconciler running (Ctrl-C to stop)", flush=True)
        await reconciler.run_forever()
    finally:
        await notifier.stop()


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processing.reconciler import Reconciler, list_late_outcomes, list_unresolved
    from paygate_server.storage import open_payment_store

    async def run() -> dict[str, Any]:
        async with open_database(settings) as db:
            connector = _connector(settings)
            processors = await _processors(settings, db)
            try:
                if not args.once:
                    await _run_forever(settings, db, connector, processors, args.json)
                reconciler = Reconciler(open_payment_store(db), connector, settings, processors=processors)
                report = await reconciler.run_once()
                store = open_payment_store(db)
                return {"checked": report.checked, "settled": report.settled, "outcomes": report.outcomes,
                        "unresolved": await list_unresolved(store), "lateOutcomes": await list_late_outcomes(store)}
            finally:
                await connector.aclose()
                await processors.aclose()

    result = asyncio.run(run())
    if args.json:
        print(json.dumps(result))
    else:
        print(f"checked {result['checked']}, settled {result['settled']}")
        _print_unresolved(result["unresolved"], False)
        _print_late(result["lateOutcomes"])


def cmd_settlement(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processing.settlement import DayNotYet, NotADay, settlement_day

    try:
        day = settlement_day(args.date)
    except NotADay:
        raise CommandError(f"--date must be YYYY-MM-DD, not {args.date!r}") from None
    except DayNotYet:
        raise CommandError(f"--date {args.date} has not happened yet (UTC): choose today or an earlier day") from None
    from paygate_server.processing.connectors import ConnectorError
    from paygate_server.processing.settlement import reconcile_settlement
    from paygate_server.processors.registry import AccountMissing, is_account
    from paygate_server.storage import open_payment_store

    async def run() -> tuple[list[Any], dict[str, int]]:
        async with open_database(settings) as db:
            processors = await _processors(settings, db)
            default = _connector(settings)
            try:
                route = default.name
                if args.account is not None:
                    if not is_account(args.account):
                        raise CommandError(f"--account must be a processor account id (pa_…), not {args.account!r}")
                    try:
                        connector = await processors.connector(args.account, default)
                    except AccountMissing:
                        raise CommandError(f"no processor account {args.account}") from None
                    route = args.account
                else:
                    connector = default
                return await reconcile_settlement(open_payment_store(db), connector, day, route)
            except ConnectorError as exc:
                raise CommandError(f"could not read the processor's settlement report: {exc}") from None
            finally:
                await default.aclose()
                await processors.aclose()

    mismatches, counts = asyncio.run(run())
    if args.json:
        print(json.dumps({"date": day.isoformat(), **counts, "items": [m.as_dict() for m in mismatches]}))
    else:
        print(f"settlement {day}: {counts['processorRecords']} processor records, "
              f"{counts['gatewayRecords']} gateway records, {len(mismatches)} mismatches")
        for m in mismatches:
            print(f"  {m.kind:6} {m.problem:21} {m.reference:34} intent={m.payment_intent_id} "
                  f"gateway={m.gateway} processor={m.processor}")
    if mismatches:
        raise SystemExit(1)


def add_commands(sub: Any) -> None:
    # Two forms; the usage line says so (argparse would print ``settlement ...`` as if it
    # were required).
    p = sub.add_parser("reconcile", help="settle unknown outcomes (`reconcile settlement`: compare a day's "
                                         "settlement report)",
                       usage="%(prog)s [--once] [--json]\n       %(prog)s settlement --date YYYY-MM-DD [--account pa_…] [--json]")
    p.add_argument("--once", action="store_true", help="one pass, then list what is still unresolved")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reconcile)
    # prog: argparse would name the sub-command after the two-line usage above.
    inner = p.add_subparsers(dest="reconcile_command", metavar="[settlement]", title="optional command", prog=p.prog)
    s = inner.add_parser("settlement", help="compare the processor's settlement report with our records")
    s.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
    s.add_argument("--account", metavar="pa_…", help="a processor account's report (default: the gateway's "
                                                       "default processor, PAYGATE_PROCESSOR_URL)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_settlement)
