"""``paygate console`` and ``paygate operators create|disable|list`` (SPEC §9, §12).

Listed in ``cli.CLI_EXTENSIONS``. A password is never an argument (it would stay in the
shell's history): it is asked for twice, or read from standard input's first line with
``--password-stdin`` (for scripts).
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from paygate_server.cli import CommandError, emit, run_uvicorn, run_with_db
from paygate_server.cli_parser import file_descriptor, port_number
from paygate_server.clock import to_rfc3339
from paygate_server.config import Settings
from paygate_server.console.roles import ROLES, is_role
from paygate_server.storage.urls import database_kind

if TYPE_CHECKING:
    from paygate_server.storage.operators import OperatorRow

# The accounts (Argon2, the database engine) and the console's security (Starlette) are
# imported by the commands that use them, not with this module: `paygate --help` imports it too.

__all__ = ["add_commands"]


_MAX_PASSWORD_LINE = 4096  # past check_password's longest, so a longer line is refused as too long


def _has_terminal() -> bool:
    """Whether this process has a controlling terminal (where getpass asks)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _read_password(from_stdin: bool) -> str:
    from paygate_server.console.accounts import AccountError, check_password

    if from_stdin:
        # A line, but never more than a password can be: `--password-stdin < /dev/zero`
        # (no newline, ever) once read until memory ran out.
        password = sys.stdin.readline(_MAX_PASSWORD_LINE).removesuffix("\n").removesuffix("\r")
    else:
        if not _has_terminal():
            # getpass would fall back to standard input, print a warning and the prompt there,
            # and end in EOFError when it is empty.
            raise CommandError("no terminal to ask the password at: pipe it with --password-stdin; "
                               "nothing was created")
        try:
            password = getpass.getpass("password for the new operator: ")
            again = getpass.getpass("the same password again: ")
        except EOFError:  # Ctrl-D at the prompt
            raise CommandError("no password was typed: nothing was created") from None
        if again != password:
            raise CommandError("the two passwords differ: nothing was created")
    try:
        check_password(password)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    return password


def _run_accounts(settings: Settings, work: Any) -> Any:
    from paygate_server.console.accounts import AccountError, Accounts

    return run_with_db(settings, lambda db: work(Accounts(db)), refused=AccountError)


def _shown(row: OperatorRow) -> dict[str, Any]:
    return {"id": row.id, "email": row.email, "role": row.role, "createdAt": to_rfc3339(row.created_at),
            "disabledAt": to_rfc3339(row.disabled_at)}


def cmd_operators_create(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.console.accounts import AccountError, normalize_email

    try:  # the arguments first: a typo costs no password typing
        email = normalize_email(args.email)
    except AccountError as exc:
        raise CommandError(str(exc)) from None
    if not is_role(args.role):
        raise CommandError(f"no role {args.role[:40]!r}: one of {', '.join(ROLES)}")
    password = _read_password(args.password_stdin)
    row: OperatorRow = _run_accounts(settings, lambda accounts: accounts.create(email, args.role, password))
    emit(args, _shown(row), f"operator {row.email} ({row.role}) created: {row.id}")


def cmd_operators_disable(args: argparse.Namespace, settings: Settings) -> None:
    row: OperatorRow = _run_accounts(settings, lambda accounts: accounts.disable(args.email))
    emit(args, {**_shown(row), "disabled": True}, f"operator {row.email} disabled; their sessions are revoked")


def cmd_operators_list(args: argparse.Namespace, settings: Settings) -> None:
    rows: list[OperatorRow] = _run_accounts(settings, lambda accounts: accounts.list())
    if args.json:
        print(json.dumps({"data": [_shown(row) for row in rows]}))  # one object, as every --json (SPEC §9)
        return
    if not rows:
        print("no operators yet: paygate operators create --email E --role admin")
    for row in rows:
        status = f"disabled {to_rfc3339(row.disabled_at)}" if row.disabled_at else "active"
        print(f"{row.email}  {row.role}  {status}  {row.id}")


def cmd_console(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.console.security import check_console_origin

    check_console_origin(settings.console_origin)  # ValueError: one line
    run_uvicorn(args, settings, app="paygate_server.console.app:create_console_app_from_env",
                starting="paygate console starting",
                fields={"database": database_kind(settings.resolved_database_url)})


def add_commands(sub: Any) -> None:
    p = sub.add_parser("console", help="run the operator console (a web console on its own port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8083)
    p.add_argument("--fd", type=file_descriptor, help="serve on this inherited listening socket")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_console)

    operators = sub.add_parser("operators", help="console accounts: create, disable, list").add_subparsers(
        dest="operators_command", required=True)
    p = operators.add_parser("create", help="create a console account (the password is asked for)")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, help=f"one of {', '.join(ROLES)}")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input's first line")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operators_create)
    p = operators.add_parser("disable", help="disable a console account and revoke its sessions")
    p.add_argument("--email", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operators_disable)
    p = operators.add_parser("list", help="the console accounts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_operators_list)
