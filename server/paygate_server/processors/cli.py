"""``paygate processors add|list|remove`` and ``paygate routing set|show|clear`` (SPEC §7, §9).

Listed in ``cli.CLI_EXTENSIONS``. The work is done by :mod:`paygate_server.processors.accounts`;
this module reads the operator's arguments and prints the results.

A credential is never printed, and never part of a refusal: a malformed ``--credential``
is refused without echoing it (the operator may have typed the secret alone), and so is a
command line argparse refuses (:mod:`paygate_server.cli_parser`). Because a
value on the command line stays in the shell's history, ``--credential NAME=@FILE`` reads
the value from a file instead (one trailing newline removed), e.g. a Docker or Kubernetes
secret mounted as a file. A credential value that itself begins with ``@`` must be given
that way.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from paygate_server.cli import CommandError, emit, read_text_file, run_with_db
from paygate_server.clock import to_rfc3339
from paygate_server.config import Settings
from paygate_server.processors.routing import rule_text

if TYPE_CHECKING:
    from paygate_server.processors.accounts import ProcessorAccount
    from paygate_server.storage import Database

# The accounts' storage (and the database engine) is imported by the commands that use it,
# not with this module: `paygate --help` imports it too.

__all__ = ["add_commands", "parse_pairs"]

T = TypeVar("T")
_MAX_SECRET_NAME = 32
# A rules file: at most MAX_RULES small rules, a few KiB; read no further than this (a
# mistaken --file /dev/zero or a log file must not be read whole into memory).
MAX_RULES_FILE_BYTES = 1024 * 1024
# A secret (an API key, a PEM): a few KiB at most.
MAX_SECRET_FILE_BYTES = 64 * 1024


def _run(settings: Settings, fn: Callable[[Database], Awaitable[T]]) -> T:
    """``fn`` on the database; an :class:`AccountError` is the operator's one line."""
    from paygate_server.processors.accounts import AccountError

    result: T = run_with_db(settings, fn, refused=AccountError)
    return result


def _read_secret_file(option: str, name: str, file: str) -> str:
    text = read_text_file(file, limit=MAX_SECRET_FILE_BYTES, what="a secret", prefix=f"{option} {name}: ")
    return text.removesuffix("\n").removesuffix("\r")


def parse_pairs(option: str, items: Sequence[str] | None, *, secret: bool) -> dict[str, str]:
    """``NAME=VALUE`` arguments as a mapping; a secret's ``NAME=@FILE`` is read from the
    file. A refusal names the option and the name, never a secret's value."""
    out: dict[str, str] = {}
    for item in items or ():
        name, equals, value = item.partition("=")
        name = name.strip()
        # A secret typed without its name (base64 has "=" in it) must not come back in a
        # refusal as the "name": names are short identifiers, keys and secrets are not.
        if not equals or not name.isidentifier() or (secret and len(name) > _MAX_SECRET_NAME):
            shown = "" if secret else f", not {item!r}"
            raise CommandError(f"{option} must be NAME=VALUE{' or NAME=@FILE' if secret else ''}{shown}")
        if name in out:
            raise CommandError(f"{option} {name} is given twice")
        if secret and value.startswith("@"):
            value = _read_secret_file(option, name, value[1:])
        out[name] = value
    return out


def _settings_text(settings: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in settings.items()) or "-"


def _account_json(account: ProcessorAccount, with_removed: bool) -> dict[str, Any]:
    shown = {"processorAccountId": account.id, "kind": account.kind, "name": account.name,
             "settings": account.settings, "created": to_rfc3339(account.created_at)}
    return {**shown, "removed": to_rfc3339(account.removed_at)} if with_removed else shown


def cmd_add(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.master_key import database_master_key

    given = parse_pairs("--setting", args.setting, secret=False)
    credentials = parse_pairs("--credential", args.credential, secret=True)

    from paygate_server.processors.accounts import add_account

    async def run(db: Database) -> ProcessorAccount:
        master = await database_master_key(settings, db)  # once the database exists
        return await add_account(db, master, merchant_id=args.merchant, kind=args.kind, name=args.name,
                                 settings=given, credentials=credentials)

    account = _run(settings, run)
    if args.json:
        print(json.dumps({"processorAccountId": account.id, "kind": account.kind, "name": account.name}))
        return
    print(f"processor account: {account.id}\nkind:              {account.kind}\nname:              {account.name}\n"
          f"settings:          {_settings_text(account.settings)}\n"
          f"notifications:     POST /processors/v1/{account.id}/webhooks on the gateway's public URL "
          "(register it at the processor)\n"
          f"credentials:       {', '.join(sorted(credentials)) or 'none'} "
          "(sealed under the master key: not shown again)")


def cmd_list(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processors.accounts import list_processor_accounts

    accounts = _run(settings, lambda db: list_processor_accounts(db, args.merchant, with_removed=args.all))
    if args.json:
        print(json.dumps({"data": [_account_json(a, args.all) for a in accounts]}))
        return
    if not any(a.removed_at is None for a in accounts):
        print("no active processor accounts (payments go to the gateway's default processor, PAYGATE_PROCESSOR_URL)")
    for a in accounts:
        removed = "" if a.removed_at is None else f", removed {to_rfc3339(a.removed_at)}"
        print(f"{a.id}  {a.kind:<9}  {a.name}  ({_settings_text(a.settings)})  created {to_rfc3339(a.created_at)}"
              f"{removed}")


def cmd_remove(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processors.accounts import remove_account

    _run(settings, lambda db: remove_account(db, merchant_id=args.merchant, account_id=args.account))
    emit(args, {"processorAccountId": args.account, "removed": True},
         f"removed {args.account}: no new payments go to it; its payments are still reconciled, captured and"
         " refunded there")


def _read_rules(file: str) -> Any:
    where = "standard input" if file == "-" else file
    text = read_text_file(file, limit=MAX_RULES_FILE_BYTES, what="a rules file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # its text names the place, never more of the document
        raise CommandError(f"{where} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:  # arrays or objects nested deeper than the parser's recursion limit
        raise CommandError(f"{where} is not a rules file (JSON nested too deeply)") from None


def _print_rules(rules: list[dict[str, Any]]) -> None:
    for number, rule in enumerate(rules, 1):
        print(f"{number}. {rule_text(rule)}")


def cmd_routing_set(args: argparse.Namespace, settings: Settings) -> None:
    document = _read_rules(args.file)
    from paygate_server.processors.accounts import set_routing

    rules = _run(settings, lambda db: set_routing(db, merchant_id=args.merchant, document=document))
    if args.json:
        print(json.dumps({"merchantId": args.merchant, "rules": rules}))
        return
    print(f"routing rules of {args.merchant} set:")
    _print_rules(rules)


def cmd_routing_show(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processors.accounts import list_processor_accounts, show_routing

    async def run(db: Database) -> tuple[list[dict[str, Any]] | None, list[ProcessorAccount]]:
        return await show_routing(db, args.merchant), await list_processor_accounts(db, args.merchant)

    rules, accounts = _run(settings, run)
    if args.json:
        print(json.dumps({"merchantId": args.merchant, "rules": rules}))
    elif rules is not None:
        _print_rules(rules)
    else:
        print(f"no routing rules: {_without_rules(accounts)}")


def _without_rules(accounts: list[ProcessorAccount]) -> str:
    """Where payments go when the merchant has no routing rules."""
    if accounts:
        return ("every payment goes to the active processor accounts in the order they were added "
                f"({', '.join(a.id for a in accounts)})")
    return "no processor accounts either, so payments go to the gateway's default processor (PAYGATE_PROCESSOR_URL)"


def cmd_routing_clear(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.processors.accounts import clear_routing, list_processor_accounts

    async def run(db: Database) -> tuple[bool, list[ProcessorAccount]]:
        return await clear_routing(db, args.merchant), await list_processor_accounts(db, args.merchant)

    cleared, accounts = _run(settings, run)
    emit(args, {"merchantId": args.merchant, "cleared": cleared},
         f"routing rules removed: {_without_rules(accounts)}" if cleared
         else "there were no routing rules")


def add_commands(sub: Any) -> None:
    processors = sub.add_parser("processors", help="a merchant's processor accounts (credentials sealed)").add_subparsers(
        dest="processors_command", required=True)
    p = processors.add_parser("add", help="add a processor account (its credentials are never shown again)",
                              epilog="Kinds: simulator (setting url); stripe (setting apiBase, credentials "
                              "secretKey, webhookSecret); adyen (settings apiBase, merchantAccount, credentials "
                              "apiKey, hmacKey). A credential on the command line stays in the shell's history: "
                              "--credential NAME=@FILE reads it from a file.")
    p.add_argument("--merchant", required=True)
    p.add_argument("--kind", required=True, help="simulator, stripe or adyen")
    p.add_argument("--name", required=True)
    p.add_argument("--setting", action="append", metavar="NAME=VALUE", help="a setting (repeatable)")
    p.add_argument("--credential", action="append", metavar="NAME=VALUE|NAME=@FILE",
                   help="a credential, or the file it is in (repeatable)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_add)
    p = processors.add_parser("list", help="a merchant's active processor accounts (never their credentials)")
    p.add_argument("--merchant", required=True)
    p.add_argument("--all", action="store_true",
                   help="the removed accounts too (their payments are still settled and refunded there)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = processors.add_parser("remove", help="no new payments to an account (its payments stay reconcilable)")
    p.add_argument("--merchant", required=True)
    p.add_argument("--account", required=True, metavar="pa_…")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_remove)

    routing = sub.add_parser("routing", help="a merchant's routing rules (which accounts a payment goes to)"
                             ).add_subparsers(dest="routing_command", required=True)
    p = routing.add_parser("set", help="replace the routing rules with a JSON file's")
    p.add_argument("--merchant", required=True)
    p.add_argument("--file", required=True, help="the rules (a JSON list); - reads standard input")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_routing_set)
    p = routing.add_parser("clear", help="drop the routing rules (every active account in turn, or the default)")
    p.add_argument("--merchant", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_routing_clear)
    p = routing.add_parser("show", help="the routing rules")
    p.add_argument("--merchant", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_routing_show)
