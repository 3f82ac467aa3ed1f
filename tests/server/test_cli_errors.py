"""The mistakes a new operator makes with ``paygate`` (issue #15 item 14): one line that
says what is wrong and what to do, exit status 2, never a traceback."""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from paygate_server.cli import build_parser, main
from tests.support.app import TEST_MASTER_KEY
from tests.support.cli_in_process import PaygateInProcess
from tests.support.databases import opened_database
from tests.support.processes import make_merchant


def paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def paygate_here(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> PaygateInProcess:
    """:func:`paygate` in this process (tests/support/cli_in_process.py), for refusals that
    are not about the process (settings, files, the database): the servers' refusals, argv's
    bytes and the port and broker ones still go through :func:`paygate`."""
    return PaygateInProcess(monkeypatch, capfd)


def assert_one_line(r: subprocess.CompletedProcess[str], *wanted: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == "", r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("paygate: "), r.stderr
    for text in wanted:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- a missing or unreadable data folder or database -------------------------------------

def test_missing_data_folder_is_named_and_not_created(tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    data = tmp_path / "paygate-dta"  # a typo
    for args, run in ((["merchants", "create", "--name", "Shop"], paygate_here),
                      (["webhooks", "list", "--merchant", "mer_x"], paygate_here),
                      (["vault", "rotate-data-key"], paygate_here), (["serve", "--port", "0"], paygate),
                      (["audit", "verify"], paygate_here)):
        line = assert_one_line(run(*args, env={"PAYGATE_DATA_DIR": str(data)}),
                               "no data folder", str(data), "PAYGATE_DATA_DIR", "paygate db upgrade")
        assert not data.exists(), line  # neither a database nor a fresh master key in the wrong place


def test_missing_database_file(tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    assert_one_line(paygate_here("keys", "create", "--merchant", "mer_x", env={"PAYGATE_DATA_DIR": str(tmp_path)}),
                    "no database", str(tmp_path / "paygate.db"), "paygate db upgrade")
    assert list(tmp_path.iterdir()) == []


def test_unusable_data_folder_or_file(tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    for args, run in ((["db", "upgrade"], paygate), (["webhooks", "list", "--merchant", "mer_x"], paygate_here)):
        assert_one_line(run(*args, env={"PAYGATE_DATA_DIR": str(not_a_folder)}), "is not a folder",
                        "PAYGATE_DATA_DIR")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not an sqlite file, but long enough to have a header" * 100)
    assert_one_line(paygate_here("webhooks", "list", "--merchant", "mer_x",
                                 env={"PAYGATE_DATABASE_URL": f"sqlite:///{garbage}"}),
                    str(garbage), "not a database", "PAYGATE_DATABASE_URL")
    folder = tmp_path / "folder.db"
    folder.mkdir()
    assert_one_line(paygate_here("webhooks", "list", "--merchant", "mer_x",
                            env={"PAYGATE_DATABASE_URL": f"sqlite:///{folder}"}), str(folder), "folder")


def test_unreachable_postgresql_never_shows_the_password(tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    port = free_port()  # nothing listens there now: connection refused
    env = {"PAYGATE_DATABASE_URL": f"postgresql://paygate:hunter2secret@127.0.0.1:{port}/paygate",
           "PAYGATE_DATA_DIR": str(tmp_path)}
    for args in (["db", "upgrade"], ["merchants", "create", "--name", "Shop"]):
        r = paygate_here(*args, env=env)
        line = assert_one_line(r, f"127.0.0.1:{port}", "connection refused", "PAYGATE_DATABASE_URL")
        assert "hunter2secret" not in r.stderr, line


def test_postgresql_database_that_does_not_exist(paygate_here: PaygateInProcess) -> None:
    base = os.environ.get("PAYGATE_TEST_DATABASE_URL")
    if not base:
        pytest.skip("PAYGATE_TEST_DATABASE_URL is not set")
    url = base.rsplit("/", 1)[0] + "/paygate_no_such_database_here"
    assert_one_line(paygate_here("webhooks", "list", "--merchant", "mer_x", env={"PAYGATE_DATABASE_URL": url}),
                    "paygate_no_such_database_here", "does not exist", "PAYGATE_DATABASE_URL")


# ---- an unknown merchant, in every subcommand that names one -----------------------------

@pytest.fixture
def operator_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {"PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path),
                        "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PAYGATE_WEBHOOK_ALLOW_PRIVATE", raising=False)
    yield database_url


@pytest.mark.parametrize("args", [
    ["keys", "create", "--merchant", "{m}"],
    ["keys", "revoke", "--merchant", "{m}", "--key", "pk_test_0000000000000000"],
    ["webhooks", "create", "--merchant", "{m}", "--url", "https://93.184.216.34/hook"],
    ["webhooks", "list", "--merchant", "{m}"],
    ["webhooks", "deliveries", "--merchant", "{m}"],
    ["webhooks", "replay", "--merchant", "{m}"],
], ids=lambda a: " ".join(a[:2]))
def test_unknown_merchant(operator_env: str, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    unknown = "mer_0000000000000000000000nope"
    code = main([a.format(m=unknown) for a in args])
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and out.err == f"paygate: no merchant {unknown}\n", out


def test_private_webhook_url_names_the_switch(operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    merchant = make_merchant(operator_env).merchant_id
    for url, hidden in (("http://127.0.0.1:9/hook", None), ("http://localhost:9/hook", "127.0.0.1")):
        code = main(["webhooks", "create", "--merchant", merchant, "--url", url])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1 and "PAYGATE_WEBHOOK_ALLOW_PRIVATE=1" in err, err
        if hidden is not None:
            assert hidden not in err, err  # never what the name resolves to


# ---- paygate demo with a port taken ------------------------------------------------------

@pytest.mark.parametrize("option", ["--port", "--simulator-port", "--storefront-port"])
def test_demo_port_taken(tmp_path: Path, option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--simulator-port": "0", "--storefront-port": "0", option: str(port)}
        r = paygate("demo", *[x for pair in ports.items() for x in pair], env={"PAYGATE_DATA_DIR": str(tmp_path)})
    assert_one_line(r, f"127.0.0.1:{port}", f"with {option} ")


@pytest.mark.parametrize("command", ["serve", "simulator"])
def test_server_port_taken(database_url: str, tmp_path: Path, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = paygate(command, "--port", str(port), env={"PAYGATE_DATABASE_URL": database_url,
                                                       "PAYGATE_DATA_DIR": str(tmp_path),
                                                       "PAYGATE_MASTER_KEY": TEST_MASTER_KEY})
    assert_one_line(r, f"127.0.0.1:{port}", "with --port ")


def test_simulator_module_entry_point_port_taken(tmp_path: Path) -> None:
    """docs/simulator.md's other way to start it, ``python -m paygate_server.simulator``."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "paygate_server.simulator", "--port", str(port),
                            "--store", str(tmp_path / "sim.db")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == [f"python -m paygate_server.simulator: cannot listen on 127.0.0.1:{port} "
                                     "(Address already in use): choose another port with --port (0: any free port)"]


# ---- --help ------------------------------------------------------------------------------

def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, command in action.choices.items():
                yield (*path, name), helps.get(name, ""), command
                yield from _commands(command, (*path, name))


def test_help_describes_every_command() -> None:
    top = paygate("--help", env={})
    assert top.returncode == 0, top.stderr
    # "    name   description": the name and the start of its description on one line.
    listed = {m.group(1): m.group(2) for m in re.finditer(r"^    (\S+) {2,}(\S.*)$", top.stdout, re.MULTILINE)}
    commands = list(_commands(build_parser()))
    assert len(commands) > 20
    for path, help_text, command in commands:
        assert help_text.strip(), f"`paygate {' '.join(path)}` has no one-line description"
        assert command.description, f"`paygate {' '.join(path)} --help` does not say what it does"
        if len(path) == 1:
            # On the command's own line, not wrapped below its name.
            assert listed.get(path[0], "").startswith(help_text.split()[0]), (path, top.stdout)


def test_reconcile_settlement_reads_as_optional() -> None:
    r = paygate("reconcile", "--help", env={})
    usage = r.stdout.split("\n\n")[0]
    assert "paygate reconcile [--once] [--json]\n" in usage and "paygate reconcile settlement --date" in usage, usage


@pytest.mark.parametrize("days_ahead", [1, 400])
def test_settlement_of_a_day_to_come_is_refused_as_the_console_does(tmp_path: Path, days_ahead: int,
                                                                   paygate_here: PaygateInProcess) -> None:
    # Once: accepted, the processor asked for a report of a day nobody had settled, and
    # "0 mismatches" printed with exit status 0, while the console refused the same day.
    day = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days_ahead)).isoformat()
    data = tmp_path / "data"
    line = assert_one_line(paygate_here("reconcile", "settlement", "--date", day, env={"PAYGATE_DATA_DIR": str(data)}),
                           f"--date {day}", "has not happened yet", "today or an earlier day")
    assert not data.exists(), line  # refused before the database or the processor


def test_settlement_date_is_only_yyyy_mm_dd(tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    # date.fromisoformat alone takes 20260131 and 2026-W05-6 as well; the console does not.
    for typed in ("20260131", "2026-W05-6", "2026-02-30"):
        assert_one_line(paygate_here("reconcile", "settlement", "--date", typed,
                                     env={"PAYGATE_DATA_DIR": str(tmp_path)}),
                        "--date must be YYYY-MM-DD", typed)


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_a_missing_option_of_a_sub_command_is_one_line_naming_the_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Once: `paygate reconcile settlement` took its name from reconcile's two-line usage, so
    # its refusal ran over three lines and sent the operator to a "--help" that is no command.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["reconcile", "settlement"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("paygate reconcile settlement: error: ") and "--date" in err, err
    assert err.rstrip().endswith("(see paygate reconcile settlement --help)"), err
    # Every command's name, as refusals and --help print it, is one line.
    assert [p.prog for p in _parsers(build_parser()) if "\n" in p.prog] == []


@pytest.mark.parametrize("typed, command", [
    (["serve", "--prot", "8080"], "paygate serve"),
    (["reconcile", "settlement", "--date", "2026-01-01", "--acount", "pa_x"], "paygate reconcile settlement"),
])
def test_a_misspelt_option_of_a_sub_command_sends_to_that_commands_help(
        typed: list[str], command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Once: "paygate: error: unrecognized arguments: --prot 8080 (see paygate --help)", and
    # paygate --help lists no option of serve's.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(typed)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"{command}: error: unrecognized arguments: "), err
    assert err.rstrip().endswith(f"(see {command} --help)"), err


@pytest.mark.parametrize("typed, command, option", [
    (["merchants", "create", "--nam", "Shop"], "paygate merchants create", "--nam"),
    (["serve", "--po", "8080"], "paygate serve", "--po"),
    (["reconcile", "settlement", "--dat", "2026-01-01"], "paygate reconcile settlement", "--dat"),
])
def test_an_abbreviated_option_is_refused(typed: list[str], command: str, option: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # argparse takes a prefix of an option by default: an operator's script typing `--nam`
    # would change meaning the day another option starting with it is added.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(typed)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"{command}: error: ") and option in err, err
    assert [p.prog for p in _parsers(build_parser()) if p.allow_abbrev] == []


# ---- a master key that is not the database's -----------------------------------------------

def test_a_master_key_that_is_not_the_databases_is_refused_before_anything_is_sealed(
        fresh_database_url: str, tmp_path: Path, paygate_here: PaygateInProcess) -> None:
    # Once: `serve` died in its start-up with a SealError traceback (from every worker), and
    # `merchants create`, `keys create` and the like sealed new secrets under the wrong key,
    # leaving one database with secrets under two keys.
    setup = {"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path / "a"),
             "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    (tmp_path / "a").mkdir()
    made = paygate_here("merchants", "create", "--name", "Shop", "--json", env=setup)
    assert made.returncode == 0, made.stderr
    merchant = json.loads(made.stdout)["merchantId"]

    def merchants() -> int:
        async def count() -> int:
            async with opened_database(fresh_database_url) as db, db.read() as conn:
                return int((await conn.execute(sql("SELECT count(*) FROM merchants"))).scalar_one())
        return asyncio.run(count())

    other = {**setup, "PAYGATE_MASTER_KEY": "11" * 32}
    # The servers in a process of their own (were the check gone, they would start and serve).
    for args, run in ((["merchants", "create", "--name", "Other"], paygate_here),
                      (["keys", "create", "--merchant", merchant], paygate_here),
                      (["vault", "rotate-data-key"], paygate_here), (["serve", "--port", "0"], paygate),
                      (["console", "--port", "0"], paygate)):
        assert_one_line(run(*args, env=other), "PAYGATE_MASTER_KEY is not the key this database's secrets are "
                                                   "sealed with", "nothing was changed")
    # No variable and no key file: refused too, and no new key file made (it would be the wrong key).
    no_key = {k: v for k, v in setup.items() if k != "PAYGATE_MASTER_KEY"}
    no_key["PAYGATE_DATA_DIR"] = str(tmp_path / "b")
    (tmp_path / "b").mkdir()
    assert_one_line(paygate_here("merchants", "create", "--name", "Other", env=no_key), "no master key",
                    str(tmp_path / "b" / "master.key"))
    assert list((tmp_path / "b").iterdir()) == []
    # A key file that is another key is named as the file.
    (tmp_path / "b" / "master.key").write_text("22" * 32 + "\n")
    assert_one_line(paygate_here("keys", "create", "--merchant", merchant, env=no_key),
                    f"the key file {tmp_path / 'b' / 'master.key'} is not the key")
    assert merchants() == 1
    assert paygate_here("keys", "create", "--merchant", merchant, env=setup).returncode == 0  # the right key still works


# ---- numbers out of range on the command line ---------------------------------------------

@pytest.mark.parametrize("args", [
    ["serve", "--port", "99999"], ["serve", "--port", "-1"], ["console", "--port", "65536"],
    ["simulator", "--port", "70000"], ["demo", "--console-port", "123456"],
], ids=" ".join)
def test_a_port_out_of_range_is_refused_in_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # Once: accepted by argparse, then socket.bind's OverflowError as a traceback.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert "must be a port number from 0 to 65535" in err and "Traceback" not in err, err


@pytest.mark.parametrize("args", [
    ["serve", "--fd", "99999999999999999999"], ["console", "--fd", "99999999999999999999"],
    ["serve", "--fd", "-1"], ["console", "--fd", "\u0663"],
], ids=" ".join)
def test_an_inherited_socket_number_out_of_range_is_refused_by_the_parser(args: list[str],
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Once: --fd took any int, and a 20-digit one reached os.dup after the database checks:
    # an OverflowError traceback ("٣" was read as fd 3).
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert "argument --fd: must be a whole number from 0 to 2147483647" in err, err


@pytest.mark.parametrize("args", [["--port", "99999999999"], ["--port", "-5"], ["--fd", "99999999999999999999"]],
                         ids=" ".join)
def test_the_simulator_module_refuses_a_port_or_socket_number_out_of_range(args: list[str],
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Once: python -m paygate_server.simulator --port 99999999999 was bind()'s OverflowError
    # traceback, --fd 99999999999999999999 socket()'s.
    from paygate_server.simulator.__main__ import main as simulator_main

    with pytest.raises(SystemExit) as exited:
        simulator_main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(f"python -m paygate_server.simulator: error: argument {args[0]}: must be"), err


@pytest.mark.parametrize("args", [["--seed", "\u0663"], ["--seed", "1_0"], ["--seed", "-1"], ["--seed", str(2**64)],
                                  ["--prot", "1"], ["--port"]], ids=" ".join)
def test_the_simulator_module_refuses_in_one_line(args: list[str], capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Once: --seed was type=int ("٣" read as 3, "1_0" as 10), and a plain ArgumentParser
    # printed its usage block before the error line (paygate's commands print one line).
    from paygate_server.simulator import __main__ as simulator_module

    monkeypatch.setattr(simulator_module, "serve", lambda *args, **kwargs: None)  # a value taken: no server
    with pytest.raises(SystemExit) as exited:
        simulator_module.main(["--store", str(tmp_path / "sim.db"), *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("python -m paygate_server.simulator: error: "), err
    if args[0] == "--seed":
        assert "argument --seed: must be a whole number from 0 to 18446744073709551615" in err, err


def test_the_simulator_module_takes_a_64_bit_seed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from paygate_server.simulator import __main__ as simulator_module

    served: dict[str, object] = {}
    monkeypatch.setattr(simulator_module, "serve", lambda *args, **kwargs: served.update(kwargs))
    assert simulator_module.main(["--port", "0", "--store", str(tmp_path / "sim.db"), "--seed", str(2**64 - 1)]) == 0
    assert served["seed"] == 2**64 - 1


@pytest.mark.parametrize("url", [
    "garbage", "mysql://ops:hunter2@db.example/paygate", "postgresql+psycopg2://ops:hunter2@127.0.0.1:1/x",
    "postgresql://ops:hunter2@[::1/x", "postgresql://ops:hunter2@db.example:notaport/x", "sqlite://",
])
def test_an_unusable_database_url_is_one_line_without_its_password(url: str, tmp_path: Path,
                                                                   paygate_here: PaygateInProcess) -> None:
    # Once: SQLAlchemy's ArgumentError, a missing driver's ModuleNotFoundError or an engine
    # TypeError, each as a 40-line traceback.
    r = paygate_here("merchants", "create", "--name", "Shop",
                env={"PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(tmp_path)})
    line = assert_one_line(r, "PAYGATE_DATABASE_URL")
    assert "hunter2" not in line


@pytest.mark.parametrize(("database", "session"), [
    ("postgresql://ops@127.0.0.1:6432/x", "garbage"),
    ("postgresql://ops@127.0.0.1:6432/x", "sqlite:///tmp/x.db"),
    ("sqlite:///tmp/x.db", "postgresql://ops:hunter2@127.0.0.1:5432/x"),
    ("", "postgresql://ops:hunter2@127.0.0.1:5432/x"),  # the default database: SQLite
])
def test_an_unusable_session_url_is_one_line_without_its_password(database: str, session: str,
                                                                   tmp_path: Path,
                                                                   paygate_here: PaygateInProcess) -> None:
    env = {"PAYGATE_DATABASE_SESSION_URL": session, "PAYGATE_DATA_DIR": str(tmp_path)}
    r = paygate_here("merchants", "create", "--name", "Shop",
                     env={**env, "PAYGATE_DATABASE_URL": database} if database else env)
    line = assert_one_line(r, "PAYGATE_DATABASE_SESSION_URL")
    assert "hunter2" not in line


@pytest.mark.parametrize(("args", "rule"), [
    (["audit", "verify", "--wait", "nan"], "from 0 to 86,400"),
    (["audit", "verify", "--wait", "-1"], "from 0 to 86,400"),
    (["relay", "--once", "--lease-timeout", "inf"], "from 0 to 86,400"),
    (["bench", "--duration", "0"], "from more than 0 to 86,400"),
    (["bench", "--rate", "-5"], "from 0 to 1,000,000"),
    (["bench", "--procs", "0"], "from 1 to 256"),
    (["bench", "--merchants", "x"], "from 1 to 10000"),
], ids=" ".join)
def test_a_duration_or_count_out_of_range_is_refused_by_the_parser(args: list[str], rule: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Once: nan, inf and -1 taken as floats and handed to timers; --procs 0 and the like
    # reached the bench's set-up.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1 and rule in err, err


@pytest.mark.parametrize(("variable", "value", "rule"), [
    ("PAYGATE_AUTHORIZATION_TTL_S", "x", "must be a number of 0 or more"),
    ("PAYGATE_AUTHORIZATION_TTL_S", "-1", "must be a number of 0 or more"),
    ("PAYGATE_AUTHORIZATION_TTL_S", "nan", "must be a number of 0 or more"),
    ("PAYGATE_TOKEN_TTL_S", "inf", "must be a number of 0 or more"),
    ("PAYGATE_DB_POOL_SIZE", "2.5", "must be a whole number, 0 or more"),
    ("PAYGATE_RECONCILE_SCHEDULE_S", "1,,2", "must be numbers of 0 or more, separated by commas"),
    ("PAYGATE_WEBHOOK_RETRY_SCHEDULE_S", "5,-60", "must be numbers of 0 or more, separated by commas"),
    # 0 where it means nothing that works (once taken: every webhook attempt timed out at
    # once, no connection could be had, a poll spun a core).
    ("PAYGATE_WEBHOOK_TIMEOUT_S", "0", "must be more than 0"),
    ("PAYGATE_DB_POOL_SIZE", "0", "must be more than 0"),
    ("PAYGATE_CHANGE_POLL_INTERVAL_S", "0.0", "must be more than 0"),
    # SPEC §3: keys are kept at least 24 h (once any number was taken: 60 pruned keys after a
    # minute, and a retry under one an hour later was a new request).
    ("PAYGATE_IDEMPOTENCY_TTL_S", "86399", "must be at least 86400 (idempotency keys are kept at least 24 h)"),
    # Values that parse but make no sense (once all taken): a schedule step of 0, a hot loop
    # against the processor or the merchant; a console session that ends at once; a signed
    # request that must land in the server's own second, or a window wider than SPEC §3's.
    ("PAYGATE_RECONCILE_SCHEDULE_S", "0",
     "every step must be at least 0.05 (a step of 0 asks the processor again with no pause)"),
    ("PAYGATE_WEBHOOK_RETRY_SCHEDULE_S", "0,0",
     "every step must be at least 0.05 (a step of 0 calls the merchant again with no pause)"),
    ("PAYGATE_WEBHOOK_RETRY_SCHEDULE_S", "5,0.01,60",
     "every step must be at least 0.05 (a step of 0 calls the merchant again with no pause)"),
    ("PAYGATE_CONSOLE_SESSION_TTL_S", "0", "must be at least 60 (a session of 0 ends as soon as it begins)"),
    ("PAYGATE_CONSOLE_IDLE_TIMEOUT_S", "59", "must be at least 60 (a session of 0 ends as soon as it begins)"),
    ("PAYGATE_TIMESTAMP_TOLERANCE_S", "0",
     "must be at least 1 (0 refuses every request not signed in the server's own second)"),
    ("PAYGATE_TIMESTAMP_TOLERANCE_S", "301", "must be at most 300 (SPEC §3: ±300 s)"),
    # Numbers as typed: float() and int() read "٣" as 3, "1_0" as 10, " 7 " as 7.
    ("PAYGATE_DB_POOL_SIZE", "\u0663", "must be a whole number, 0 or more"),
    ("PAYGATE_TOKEN_TTL_S", "1_0", "must be a number of 0 or more"),
    ("PAYGATE_RELAY_BATCH_SIZE", " 7 ", "must be a whole number, 0 or more"),
    # Too large to use: once taken, and then an OverflowError traceback in the background
    # work (a hold's expiry as µs, a LIMIT SQLite cannot hold), PostgreSQL refusing every
    # connection, or a start-up traceback making a checkout key of 3 bits.
    ("PAYGATE_AUTHORIZATION_TTL_S", "1e300", "must be at most 315,360,000 (ten years)"),
    ("PAYGATE_WEBHOOK_RETRY_SCHEDULE_S", "5,1e12", "must be at most 315,360,000 (ten years)"),
    ("PAYGATE_RELAY_BATCH_SIZE", "1" + "0" * 29, "must be at most 1,000,000"),
    ("PAYGATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", "1e7",
     "must be at most 2,147,483 (PostgreSQL's limit, about 24 days)"),
    ("PAYGATE_CARD_KEY_BITS", "3", "must be a multiple of 8 from 2048 to 8192"),
    ("PAYGATE_CARD_KEY_BITS", "1" + "0" * 20, "must be a multiple of 8 from 2048 to 8192"),
])
def test_a_numeric_variable_that_is_not_a_number_of_0_or_more_is_named(variable: str, value: str, rule: str,
                                                                          tmp_path: Path,
                                                                          paygate_here: PaygateInProcess) -> None:
    # Once: "could not convert string to float: 'x'", naming no variable; -1, nan and inf
    # were taken (a hold voided at once, a TTL that overflows when turned into µs).
    r = paygate_here("merchants", "create", "--name", "Shop", env={variable: value, "PAYGATE_DATA_DIR": str(tmp_path)})
    assert assert_one_line(r) == f"paygate: {variable}: {rule}"


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("PAYGATE_PROCESSOR_URL", "nan", "not a URL with a scheme paygate supports: write one like http://127.0.0.1:8081"),
    ("PAYGATE_PROCESSOR_URL", "http://ops:hunter2@[::1", "not a URL: write one like http://127.0.0.1:8081"),
    ("PAYGATE_PROCESSOR_URL", "http://sim.example:99999", "not a URL: write one like http://127.0.0.1:8081"),
    ("PAYGATE_BROKER_URL", "nats://ops:hunter2@[::1", "not a URL: write one like nats://127.0.0.1:4222"),
    ("PAYGATE_BROKER_URL", "http://127.0.0.1:4222",
     "not a URL with a scheme paygate supports: write one like nats://127.0.0.1:4222"),
    ("PAYGATE_ARCHIVE_S3_ENDPOINT", "http:///bucket", "not a URL with a host: write one like http://minio:9000"),
])
def test_a_url_variable_that_is_no_url_is_named(variable: str, value: str, problem: str, tmp_path: Path,
                                                paygate_here: PaygateInProcess) -> None:
    # Once: taken, then the gateway's (and the console's) start-up traceback from every worker
    # (urlsplit's "Invalid IPv6 URL", "unsupported processor URL scheme ''"), and nats-py's
    # traceback from `paygate relay`.
    r = paygate_here("merchants", "create", "--name", "Shop", env={variable: value, "PAYGATE_DATA_DIR": str(tmp_path)})
    assert assert_one_line(r) == f"paygate: {variable}: {problem}"


@pytest.mark.parametrize("command", ["serve", "console"])
def test_a_processor_url_naming_no_connector_stops_the_server_in_one_line(database_url: str, tmp_path: Path,
                                                                          command: str) -> None:
    # Once: "no connector for processor URL scheme 'nosuch'" as a traceback from the app's
    # start-up (uvicorn's exit status 3), after the start-up line had been logged.
    r = paygate(command, "--port", "0", env={"PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path),
                                             "PAYGATE_MASTER_KEY": TEST_MASTER_KEY,
                                             "PAYGATE_PROCESSOR_URL": "nosuch://processor.example"})
    assert assert_one_line(r) == "paygate: PAYGATE_PROCESSOR_URL: no connector for processor URL scheme 'nosuch'"


@pytest.mark.parametrize("limit", ["-1", "0", "99999999999999999999999", "10001", "x"])
def test_deliveries_limit_out_of_range_is_refused_by_the_parser(limit: str, operator_env: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Once: -1 was all rows on SQLite and PostgreSQL's "LIMIT must not be negative" traceback,
    # a 23-digit one SQLite's OverflowError traceback.
    with pytest.raises(SystemExit) as exited:
        main(["webhooks", "deliveries", "--limit", limit])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "argument --limit: must be a whole number from 1 to 10000" in err, err


def test_replay_of_an_unknown_or_another_merchants_endpoint_or_event_is_refused(
        operator_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Once: exit 0 and "0 failed deliveries scheduled again", as if the id were right.
    mine, theirs = make_merchant(operator_env).merchant_id, make_merchant(operator_env).merchant_id
    assert main(["webhooks", "create", "--merchant", theirs, "--url", "https://93.184.216.34/hook", "--json"]) == 0
    endpoint = json.loads(capsys.readouterr().out)["webhookEndpointId"]
    for args, says in (
        (["--endpoint", "we_0000000000000000000000nope"], "no webhook endpoint we_0000000000000000000000nope"),
        (["--event", "evt_0000000000000000000000nope"], "no event evt_0000000000000000000000nope"),
        (["--endpoint", endpoint, "--merchant", mine], f"no webhook endpoint {endpoint} of merchant {mine}"),
    ):
        code = main(["webhooks", "replay", *args])
        out = capsys.readouterr()
        assert code == 2 and out.out == "" and out.err == f"paygate: {says}\n", out
    assert main(["webhooks", "replay", "--endpoint", endpoint]) == 0  # its own: nothing failed yet
    assert capsys.readouterr().out == "0 failed deliveries scheduled again\n"


@pytest.mark.parametrize("workers", ["0", "-1", "257"])
def test_serve_workers_out_of_range_is_refused_by_the_parser(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Once: --workers 0 or -1 started one gateway process on the default port, as if asked.
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--workers", workers])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1, err
    assert "argument --workers: must be a whole number from 1 to 256" in err, err


@pytest.mark.parametrize("name", [os.fsdecode(b"Caf\xe9"), "Shop\x01", "Shop\x1b[31m"], ids=["latin-1 byte", "SOH", "ESC"])
def test_a_merchant_name_that_is_not_printable_utf8_is_refused(name: str, database_url: str, tmp_path: Path) -> None:
    # Once: a byte of argv that is not UTF-8 ended in asyncpg's encode error as a 135-line
    # traceback on PostgreSQL (a codec message on SQLite); control characters were stored.
    r = paygate("merchants", "create", "--name", name, env={
        "PAYGATE_DATABASE_URL": database_url, "PAYGATE_DATA_DIR": str(tmp_path), "PAYGATE_MASTER_KEY": TEST_MASTER_KEY})
    assert_one_line(r, "a merchant name has printable characters only")


def test_relay_once_meeting_another_relays_segment_is_one_line(
        operator_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Two relays really did split (one lost its lease mid-write): the archive refuses the
    # stale one's entry; --once says so in one line, as the loop logs it and starts again.
    from paygate_server.cdc.archive import ArchiveProblem
    from paygate_server.cdc.relay import Relay

    async def stale(self: Relay, **_: object) -> dict[str, int]:
        raise ArchiveProblem("segment 3 already has its manifest entry: another relay archived it")

    monkeypatch.setattr(Relay, "drain", stale)
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code = main(["relay", "--once"])
    out = capsys.readouterr()
    assert code == 2 and out.out == "", out
    assert out.err == "paygate: the archive: segment 3 already has its manifest entry: another relay archived it\n"


def test_a_reader_that_stops_reading_gets_no_error(operator_env: str, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # `paygate … | head`: once head has its lines it closes the pipe; no "Broken pipe" line.
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["operators", "list"]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", [["simulator"], []], ids=["paygate simulator", "python -m paygate_server.simulator"])
def test_a_simulator_seed_that_is_no_number_is_named(command: list[str], tmp_path: Path) -> None:
    # Once: int()'s ValueError — a traceback from python -m paygate_server.simulator, and
    # "invalid literal for int() with base 10: 'x'" (naming nothing) from paygate simulator.
    module = "paygate_server" if command else "paygate_server.simulator"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    r = subprocess.run([sys.executable, "-m", module, *command, "--port", "0", "--store", str(tmp_path / "sim.db")],
                       env={**base, "PAYGATE_SIMULATOR_SEED": "x", "PAYGATE_DATA_DIR": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    prog = "paygate" if command else "python -m paygate_server.simulator"
    assert r.returncode == 2 and r.stderr == f"{prog}: PAYGATE_SIMULATOR_SEED: must be a whole number, 0 or more\n", (
        r.returncode, r.stderr)


def test_relay_once_with_an_s3_archive_it_cannot_reach_is_one_line(fresh_database_url: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Once: httpx's ConnectError as a traceback (audit verify, reindex and the others
    # already said "cannot read the archive"). A database of its own: the relay takes leases.
    monkeypatch.setenv("PAYGATE_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("PAYGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PAYGATE_MASTER_KEY", TEST_MASTER_KEY)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for name, value in {"PAYGATE_ARCHIVE_S3_BUCKET": "b", "PAYGATE_ARCHIVE_S3_ACCESS_KEY": "a",
                        "PAYGATE_ARCHIVE_S3_SECRET_KEY": "s",
                        "PAYGATE_ARCHIVE_S3_ENDPOINT": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(name, value)
    assert main(["relay", "--once", "--consumer", "archive"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("paygate: cannot reach the archive: "), out
    assert len(out.err.splitlines()) == 1, out.err


@pytest.mark.parametrize("content", [b"zz\n", b"\xff\xfe\x00", b""], ids=["text", "binary", "empty"])
def test_a_damaged_key_file_is_named(content: bytes, database_url: str, tmp_path: Path,
                                     paygate_here: PaygateInProcess) -> None:
    # Once: "PAYGATE_MASTER_KEY must be 32 bytes, …" (a variable nobody had set) or, for
    # bytes that are no text, "'utf-8' codec can't decode byte 0xff …", naming nothing.
    (tmp_path / "master.key").write_bytes(content)
    r = paygate_here("keys", "rotate-card-key", env={"PAYGATE_DATA_DIR": str(tmp_path),
                                                "PAYGATE_DATABASE_URL": database_url})
    assert assert_one_line(r) == (f"paygate: the key file {tmp_path / 'master.key'} must be 32 bytes, as 64 hex "
                                  "digits or base64url")


@pytest.mark.parametrize("typed", ["2026-W05-6", "20260131"])
def test_reconcile_settlement_refuses_another_spelling_of_a_day(typed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconcile", "settlement", "--date", typed]) == 2
    # Once: date.fromisoformat read both as 2026-01-31 (the second as an ISO week day).
    assert capsys.readouterr().err == f"paygate: --date must be YYYY-MM-DD, not {typed!r}\n"


@pytest.mark.parametrize(("variable", "value", "rule"), [
    ("PAYGATE_ARCHIVE_S3_REGION", "\u00b2", "must be a region name, like us-east-1"),
    ("PAYGATE_ARCHIVE_S3_BUCKET", "b/../x", "must be a bucket name: letters, digits, '.', '-' and '_'"),
])
def test_an_s3_name_that_cannot_be_in_a_url_is_named(variable: str, value: str, rule: str, tmp_path: Path,
                                                     paygate_here: PaygateInProcess) -> None:
    # Once: httpx's InvalidURL ("Invalid IDNA hostname: 'b.s3.².amazonaws.com'") as a traceback
    # from audit verify and the relay.
    env = {"PAYGATE_ARCHIVE_S3_BUCKET": "b", "PAYGATE_ARCHIVE_S3_ACCESS_KEY": "a", "PAYGATE_ARCHIVE_S3_SECRET_KEY": "s",
           "PAYGATE_DATA_DIR": str(tmp_path), variable: value}
    assert assert_one_line(paygate_here("audit", "verify", env=env)) == f"paygate: {variable}: {rule}"


def test_relay_once_with_a_broker_it_cannot_reach_is_one_line(fresh_database_url: str, tmp_path: Path) -> None:
    # Once: nats-py's NoServersError as a traceback, after four logged tracebacks of its own
    # (one per connection attempt).
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    r = paygate("relay", "--once", "--consumer", "broker",
                env={"PAYGATE_DATABASE_URL": fresh_database_url, "PAYGATE_DATA_DIR": str(tmp_path),
                     "PAYGATE_MASTER_KEY": TEST_MASTER_KEY, "PAYGATE_BROKER_URL": f"nats://127.0.0.1:{port}"})
    assert assert_one_line(r) == ("paygate: cannot reach the broker (PAYGATE_BROKER_URL): nats: no servers available "
                                  "for connection")
