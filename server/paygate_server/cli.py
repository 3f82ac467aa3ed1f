"""The ``paygate`` command line (SPEC §9).

Every command reads configuration from ``PAYGATE_*`` variables. Operator mistakes end with
a one-line message and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

from paygate_server.cards.pan import contains_card_number
from paygate_server.cli_parser import HIDDEN, Parser, file_descriptor, port_number, whole_number
from paygate_server.config import Settings
from paygate_server.logs import redact_url
from paygate_server.private_files import private_dir, use_private_umask
from paygate_server.storage import CannotOpen, SchemaMismatch
from paygate_server.storage.opening import database_refusal, first_contact
from paygate_server.storage.urls import database_file, database_kind

if TYPE_CHECKING:
    from paygate_server.merchants import KeyPair
    from paygate_server.storage import Database, Transaction

# What a command needs beyond parsing its arguments — the database engine (SQLAlchemy's
# asyncio extension and ORM), Alembic, the gateway's services — is imported inside the
# command: every `paygate …` and every process the tests spawn starts here, `--help` too
# (tests/server/test_startup_imports.py).

__all__ = ["main", "CommandError", "CLI_EXTENSIONS", "emit", "open_database", "run_with_db", "require_merchant",
           "port_taken", "check_port_free", "run_uvicorn", "check_sessions", "read_text_file"]


class CommandError(Exception):
    """An operator-facing failure: printed as one line, exit status 2."""


def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """A command's result: ``payload`` as one JSON object under ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(payload))
    else:
        print(text)


def _emit_pair(args: argparse.Namespace, pair: KeyPair, heading: str = "") -> None:
    emit(args, {"merchantId": pair.merchant_id, "apiKey": pair.api_key, "signingSecret": pair.signing_secret},
          f"{heading}api key:        {pair.api_key}\nsigning secret: {pair.signing_secret}\n"
          "(the signing secret is shown only now: store it safely)")


def _configured(settings: Settings) -> str:
    """The variable that chose the database (what to fix when it is wrong)."""
    return "PAYGATE_DATABASE_URL" if settings.database_url else "PAYGATE_DATA_DIR"


def read_text_file(file: str, *, limit: int, what: str, prefix: str = "") -> str:
    """The UTF-8 text of ``file`` (``-``: standard input), read no further than ``limit``
    bytes: a mistaken ``/dev/zero``, a FIFO or a log file is refused, not read whole into
    memory (``--credential key=@/dev/zero`` once read until memory ran out). Every refusal
    is a :class:`CommandError` (``prefix`` first) saying which file and why, never its text."""
    where = "standard input" if file == "-" else file
    try:
        if file == "-":
            text = sys.stdin.read(limit + 1)
            size = len(text.encode("utf-8", "surrogateescape"))
        else:
            with open(file, "rb") as stream:
                data = stream.read(limit + 1)
            size, text = len(data), data.decode("utf-8")
    except FileNotFoundError:
        raise CommandError(f"{prefix}no file {file}") from None
    except IsADirectoryError:
        raise CommandError(f"{prefix}{file} is a folder, not {what}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{prefix}{where} is not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"{prefix}cannot read {where} ({exc.strerror or type(exc).__name__})") from None
    if size > limit:
        raise CommandError(f"{prefix}{where} is larger than {limit // 1024} KiB: not {what}")
    return text


def _check_data_files(settings: Settings, *, create: bool) -> None:
    """A command that needs the database must not create an empty one (nor a fresh master
    key beside it) because PAYGATE_DATA_DIR has a typo: say what is missing instead. One
    that creates them (``db upgrade``, ``demo``) still needs a folder where a folder should be."""
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise CommandError(f"{settings.data_dir} is not a folder (PAYGATE_DATA_DIR): set PAYGATE_DATA_DIR "
                           "to your data folder")
    path = database_file(settings.resolved_database_url)
    if path is None:
        return
    folder, configured = path.parent, _configured(settings)
    if folder.exists() and not folder.is_dir():
        raise CommandError(f"{folder} is not a folder ({configured}): set {configured} to your data folder")
    if path.is_dir():
        raise CommandError(f"the database {path} is a folder, not a file ({configured})")
    if create or path.exists():
        return  # (the engine creates a missing file and folder, private)
    if not folder.exists():
        raise CommandError(f"no data folder {folder} ({configured}): run `paygate db upgrade` to create it, "
                           f"or set {configured} to your data folder")
    raise CommandError(f"no database {path}: run `paygate db upgrade` to create it, or set {configured} "
                       "to where your database is")


_SESSION_URL_ADVICE = ("set PAYGATE_DATABASE_SESSION_URL to PostgreSQL itself, not through the pooler "
                       "(docs/operations.md, \"Behind PgBouncer\")")


@asynccontextmanager
async def open_database(settings: Settings, *, check: bool = True) -> AsyncIterator[Database]:
    """The database for one command: refused in one line if it is missing or cannot be
    reached, and (``check``) if its schema is not this code's; ``check=False`` is for the
    commands that create it. Every command opens it here."""
    from paygate_server.storage import create_database

    _check_data_files(settings, create=not check)
    url = settings.resolved_database_url
    db = create_database(url, session_url=settings.resolved_session_url)
    try:
        try:
            await first_contact(db, check=check)
        except CannotOpen as exc:
            shown = database_file(url) or redact_url(url)  # no credentials, nor a query string that may hold one
            if exc.pooler:
                raise CommandError(f"cannot use the database {shown} ({exc.reason}): PAYGATE_DATABASE_URL "
                                   f"is a transaction-mode pooler (PgBouncer?): {_SESSION_URL_ADVICE}") from None
            server = "" if database_file(url) else " and that the database server is running"
            raise CommandError(f"cannot open the database {shown} ({exc.reason}): check {_configured(settings)}"
                               f"{server}") from None
        yield db
    finally:
        await db.dispose()


def run_with_db(settings: Settings, fn: Callable[[Database], Awaitable[Any]], *, check: bool = True,
                refused: type[Exception] | tuple[type[Exception], ...] = ()) -> Any:
    """Run ``fn(db)`` on the opened database (see :func:`open_database`) to completion;
    ``refused``: the errors that are the operator's one line (a :class:`CommandError`)."""
    async def run() -> Any:
        async with open_database(settings, check=check) as db:
            try:
                return await fn(db)
            except refused as exc:
                raise CommandError(str(exc)) from None

    return asyncio.run(run())


def port_taken(host: str, port: int, option: str, exc: OSError) -> CommandError:
    """The one-line refusal for a listening port that cannot be had: which one, and the
    option that moves it (a second demo or gateway on the same port is the usual case)."""
    return CommandError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another port with "
                        f"{option} (0: any free port)")


def check_port_free(host: str, port: int, option: str) -> None:
    """Refuse a port in use before a server starts (uvicorn would log its startup first and
    then fail); binding is the only reliable test. The server binds it again right after."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise port_taken(host, port, option, exc) from None


async def require_merchant(conn: Transaction, merchant_id: str) -> None:
    """Every command that names a merchant refuses an unknown one the same way."""
    from paygate_server.merchants import get_merchant

    if await get_merchant(conn, merchant_id) is None:
        raise CommandError(f"no merchant {merchant_id}")


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.storage import upgrade

    before, after = run_with_db(settings, upgrade, check=False)
    private_dir(settings.data_dir)  # the master key's folder, also when the database is elsewhere
    emit(args, {"from": before, "to": after},
          f"database schema: {before or 'empty'} -> {after}" if before != after else f"database schema is current ({after})")


def cmd_merchants_create(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.master_key import database_master_key
    from paygate_server.merchants import create_merchant

    async def run(db: Database) -> Any:
        # The key only once the database is known to exist: it may create the key file.
        master = await database_master_key(settings, db)
        async with db.write() as conn:
            return await create_merchant(conn, master, name=args.name, origins=args.origin or [], live=args.live)

    pair = run_with_db(settings, run)
    _emit_pair(args, pair, f"merchant:       {pair.merchant_id}\n")


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.master_key import database_master_key
    from paygate_server.merchants import create_key

    async def run(db: Database) -> Any:
        master = await database_master_key(settings, db)
        async with db.write() as conn:
            return await create_key(conn, master, args.merchant, live=args.live)

    _emit_pair(args, run_with_db(settings, run))


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.merchants import revoke_key

    async def run(db: Database) -> None:
        async with db.write() as conn:
            await require_merchant(conn, args.merchant)
            await revoke_key(conn, args.merchant, args.key)

    run_with_db(settings, run)
    emit(args, {"merchantId": args.merchant, "apiKey": args.key, "revoked": True}, f"revoked {args.key}")


def cmd_keys_rotate_card_key(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cards.keystore import rotate_card_key
    from paygate_server.master_key import database_master_key

    async def run(db: Database) -> Any:
        master = await database_master_key(settings, db)
        return await rotate_card_key(db, master, bits=settings.card_key_bits)

    retired, kid = run_with_db(settings, run)
    emit(args, {"kid": kid, "retired": retired},
          f"new checkout key {kid}; retired {', '.join(retired) or 'none'} (retired keys keep decrypting for 25 h)")


def _listen_address(args: argparse.Namespace) -> str:
    if args.fd is None:
        return f"{args.host}:{args.port}"
    sock = socket.socket(fileno=os.dup(args.fd))  # a duplicate: the original stays uvicorn's
    try:
        host, port = sock.getsockname()[:2]
    except (OSError, ValueError):
        return f"fd {args.fd}"
    finally:
        sock.close()
    return f"{host}:{port} (fd {args.fd})"


async def check_sessions(settings: Settings, db: Database) -> None:
    """Refuse, in one line, to run the relay or the change listener where their sessions
    would go through a pooler (storage/sessions.py): two relays could then both hold a
    consumer's lease, and long-polls would never be woken."""
    from paygate_server.storage.sessions import SessionNotBound, check_session_connections

    try:
        await check_session_connections(db)
    except SessionNotBound as exc:
        url = "PAYGATE_DATABASE_SESSION_URL" if settings.resolved_session_url else "PAYGATE_DATABASE_URL"
        raise CommandError(f"{exc} ({url}): {_SESSION_URL_ADVICE}") from None


def run_uvicorn(args: argparse.Namespace, settings: Settings, *, app: str, starting: str,
                fields: dict[str, Any], session_work: bool = False,
                also_check: Callable[[Database], Awaitable[None]] | None = None,
                refused: type[Exception] | tuple[type[Exception], ...] = (), **options: Any) -> None:
    """The start-up ``paygate serve`` and ``paygate console`` share: refuse a wrong log
    format, a missing database, a wrong schema, a master key that is not the database's,
    whatever ``also_check`` refuses (its ``refused`` errors, in one line) and a taken port
    before anything listens, set up logging, log one ``starting`` line (``fields`` plus where
    it listens), then run the ``app`` factory.

    ``options`` go to ``uvicorn.run`` on top of what both servers need (workers, keep-alive)."""
    import logging.config

    import uvicorn

    from paygate_server.http.protocol import CoalescingHttpToolsProtocol
    from paygate_server.logs import STARTUP_LOGGER, logging_config
    from paygate_server.master_key import database_master_key
    from paygate_server.processing.connectors import connector_for_url

    log_config = logging_config(args.log_level)  # a wrong PAYGATE_LOG_FORMAT is said first

    async def checks(db: Database) -> None:
        # Up front, in one line each (in the app's start-up, a traceback from every worker).
        await database_master_key(settings, db)
        try:  # (Settings checked the URL's form; this, that its scheme names a connector)
            connector_for_url(settings.processor_url)
        except ValueError as exc:
            raise CommandError(f"PAYGATE_PROCESSOR_URL: {exc}") from None
        if session_work:
            await check_sessions(settings, db)
        if also_check is not None:
            await also_check(db)

    run_with_db(settings, checks, refused=refused)
    if args.fd is None:
        check_port_free(args.host, args.port, "--port")
    logging.config.dictConfig(log_config)
    logging.getLogger(STARTUP_LOGGER).info(starting, extra={"fields": {**fields, "listen": _listen_address(args)}})
    uvicorn.run(
        app,
        factory=True,
        host=args.host,
        port=args.port,
        fd=args.fd,
        log_level=args.log_level,
        log_config=log_config,
        access_log=False,  # paygate.request logs each request (route templates, no raw paths)
        server_header=False,
        # One send per response, and limits on request heads (see paygate_server.http.protocol).
        http=CoalescingHttpToolsProtocol,
        # Nothing trusts the client's address from a header: /metrics treats a forwarded
        # request as remote (observability.scrape) and the console records the peer's address.
        proxy_headers=False,
        **options,
    )


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.cdc.archive import ArchiveAhead
    from paygate_server.cdc.restore import refuse_if_archive_ahead
    from paygate_server.headerguard import keep_alive_s

    database = settings.resolved_database_url
    run_uvicorn(
        args, settings, app="paygate_server.app:create_app_from_env", starting="paygate serve starting",
        session_work=True,
        # A database restored under a newer archive would hand out the archive's change ids
        # again (docs/operations.md, "Backups and restore"): refused like a schema that is not current.
        also_check=lambda db: refuse_if_archive_ahead(settings, db), refused=ArchiveAhead,
        fields={"version": _version(), "database": database_kind(database), "database_at": redact_url(database),
                "processor": redact_url(settings.processor_url), "workers": args.workers},
        workers=args.workers,
        # uvicorn takes seconds as a float too; clients close idle connections first (headerguard)
        timeout_keep_alive=keep_alive_s(),
    )


def _version() -> str:
    import importlib.metadata  # (~0.1 s: only serve says its version)

    try:
        return importlib.metadata.version("paygate")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cmd_simulator(args: argparse.Namespace, settings: Settings) -> None:
    from paygate_server.simulator import serve

    check_port_free(args.host, args.port, "--port")
    private_dir(settings.data_dir)
    # --store, else $PAYGATE_SIMULATOR_STORE, else the data folder's: serve() decides.
    serve(host=args.host, port=args.port, store_path=args.store)


# Domains add their sub-commands: each module defines ``add_commands(subparsers)``.
CLI_EXTENSIONS: tuple[str, ...] = (
    "paygate_server.cdc.cli", "paygate_server.cdc.history_cli", "paygate_server.webhooks.cli",
    "paygate_server.vault.cli", "paygate_server.demo", "paygate_server.bench.command",
    "paygate_server.processing.cli", "paygate_server.processors.cli", "paygate_server.console.cli",
    "paygate_server.simulation.cli")


def build_parser() -> argparse.ArgumentParser:
    json_flag = Parser(add_help=False)
    json_flag.add_argument("--json", action="store_true")
    parser = Parser(
        prog="paygate", description="paygate payment gateway. Configuration: PAYGATE_* environment variables "
        "(PAYGATE_DATA_DIR, default ./paygate-data; PAYGATE_DATABASE_URL; PAYGATE_PROCESSOR_URL; ...).",
        formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    db = sub.add_parser("db", help="the database schema: `db upgrade` creates or migrates it").add_subparsers(
        dest="db_command", required=True)
    p = db.add_parser("upgrade", help="apply schema migrations", parents=[json_flag])
    p.set_defaults(func=cmd_db_upgrade)

    merchants = sub.add_parser("merchants", help="create a merchant and its first API key pair").add_subparsers(dest="merchants_command", required=True)
    p = merchants.add_parser("create", help="create a merchant and its first key pair", parents=[json_flag])
    p.add_argument("--name", required=True)
    p.add_argument("--origin", action="append", help="an allowed checkout origin (repeatable)")
    p.add_argument("--live", action="store_true", help="a live key pair (pk_live_/sk_live_)")
    p.set_defaults(func=cmd_merchants_create)

    keys = sub.add_parser("keys", help="API key pairs (create, revoke) and the checkout card key").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="add a key pair to a merchant (rotation)", parents=[json_flag])
    p.add_argument("--merchant", required=True)
    p.add_argument("--live", action="store_true")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("revoke", help="revoke a key pair", parents=[json_flag])
    p.add_argument("--merchant", required=True)
    p.add_argument("--key", required=True)
    p.set_defaults(func=cmd_keys_revoke)
    p = keys.add_parser("rotate-card-key", help="new checkout (JWE) key; the old one keeps decrypting for 25 h",
                        parents=[json_flag])
    p.set_defaults(func=cmd_keys_rotate_card_key)

    p = sub.add_parser("serve", help="run the gateway (API, hosted checkout, background workers)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8080)
    p.add_argument("--workers", type=whole_number(1, 256), default=1)
    p.add_argument("--fd", type=file_descriptor, help="serve on this inherited listening socket")
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("simulator", help="run the processor simulator (the card processor stand-in)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8081)
    p.add_argument("--store", help="the simulator's SQLite file (default: $PAYGATE_SIMULATOR_STORE, else $PAYGATE_DATA_DIR/simulator.db)")
    p.set_defaults(func=cmd_simulator)

    for name in CLI_EXTENSIONS:
        importlib.import_module(name).add_commands(sub)
    _describe(parser)
    return parser


class _Formatter(argparse.HelpFormatter):
    """argparse measures command names one indent short of where it prints them, so a
    name as long as ``merchants`` pushed its description onto the next line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            longest = max((len(name) for name in action.choices), default=0)
            self._action_max_length = max(self._action_max_length,
                                          longest + self._current_indent + 2 * self._indent_increment)


def _describe(parser: argparse.ArgumentParser) -> None:
    """Each command's ``--help`` opens with the line ``paygate --help`` shows for it (set
    once here rather than repeated as ``description=`` in every module)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                command = action.choices[choice.dest]
                if command.formatter_class is argparse.HelpFormatter:
                    command.formatter_class = _Formatter
                if command.description is None and choice.help:
                    command.description = choice.help[:1].upper() + choice.help[1:] + "."
                _describe(command)


def _one_line(message: str, typed: Sequence[str]) -> str:
    """``message`` as one safe line: every typed argument that holds a card number hidden
    (a refusal names what was typed, ``no merchant …``, and a card number pasted into the
    wrong place must not land in a terminal's scroll-back or a CI log: SPEC §5), and every
    control character escaped (a typed newline would split the line, an escape sequence
    would drive the terminal)."""
    for token in sorted(typed, key=len, reverse=True):
        if token and contains_card_number(token):
            message = message.replace(token, HIDDEN)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def main(argv: Sequence[str] | None = None) -> int:
    use_private_umask()  # the data directory's files, logs and archives: owner only
    typed = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(typed)
    try:
        settings = Settings.from_env()
        args.func(args, settings)
    except (CommandError, SchemaMismatch, ValueError) as exc:  # (a MerchantError is a ValueError)
        print(f"paygate: {_one_line(str(exc), typed)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped reading (`paygate … | head`): nothing to say. Python flushes
        # standard output once more at exit; that goes to /dev/null, not to a second error.
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        # Which file: "Permission denied" alone does not say what to fix.
        where = f": {exc.filename}" if exc.filename else ""
        print(_one_line(f"paygate: {exc.strerror or exc}{where}", typed), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A database that refuses mid-command (locked past the busy timeout, read-only, full,
        # a statement timeout, the server ending the session): the driver's first line, never
        # SQLAlchemy's, which carries the statement and its parameters. Anything else is a bug.
        if (reason := database_refusal(exc)) is None:
            raise
        print(f"paygate: {_one_line(f'the database refused: {reason}', typed)}", file=sys.stderr)
        return 2
    return 0

