"""``paygate operators create|disable|list`` and ``paygate console``'s refusals (SPEC §9):
one line and exit status 2 for every mistake; SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import getpass
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from paygate_server.cli import main
from paygate_server.console.accounts import Accounts
from paygate_server.storage import create_database
from tests.server.console.conftest import CHEAP, PASSWORD, new_email
from tests.support.app import TEST_MASTER_KEY, use_cli_env


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield use_cli_env(monkeypatch, database_url, tmp_path)


def _login(url: str, email: str, password: str) -> bool:
    async def run() -> bool:
        db = create_database(url)
        try:
            return (await Accounts(db, CHEAP).login(email, password, None)).operator is not None
        finally:
            await db.dispose()
    return asyncio.run(run())


def _one_line_refusal(capsys: pytest.CaptureFixture[str], says: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paygate: ") and says in err, err
    assert "Traceback" not in err


def test_create_from_stdin_then_disable_and_list(env: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    email = new_email("cli")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["operators", "create", "--email", email.upper(), "--role", "support", "--password-stdin",
                 "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["email"], shown["role"], shown["disabledAt"]) == (email, "support", None)
    assert shown["id"].startswith("op_") and PASSWORD not in json.dumps(shown)
    assert _login(env, email, PASSWORD)
    assert main(["operators", "list"]) == 0
    assert any(line.startswith(f"{email}  support  active") for line in capsys.readouterr().out.splitlines())
    assert main(["operators", "disable", "--email", email]) == 0
    assert "sessions are revoked" in capsys.readouterr().out
    assert not _login(env, email, PASSWORD)
    assert main(["operators", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert set(listed) == {"data"}  # one JSON object, like every list's --json (SPEC §9)
    [row] = [r for r in listed["data"] if r["email"] == email]
    assert row["disabledAt"] is not None


def test_disable_json_shows_the_account_disabled(env: str, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    email = new_email("off")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["operators", "create", "--email", email, "--role", "viewer", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["operators", "disable", "--email", email, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["email"] == email and shown["disabled"] is True
    assert shown["disabledAt"] is not None  # it printed the row read before disabling: null


def test_create_asks_twice(env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    monkeypatch.setattr("paygate_server.console.cli._has_terminal", lambda: True)  # (pytest may run without one)
    email = new_email("ask")
    assert main(["operators", "create", "--email", email, "--role", "viewer"]) == 0
    assert f"operator {email} (viewer) created" in capsys.readouterr().out
    assert _login(env, email, PASSWORD)
    answers = iter([PASSWORD, PASSWORD + "!"])
    other = new_email("ask")
    assert main(["operators", "create", "--email", other, "--role", "viewer"]) == 2
    _one_line_refusal(capsys, "the two passwords differ")


def test_create_without_a_terminal_or_password_stdin_is_one_line(env: str, tmp_path: Path) -> None:
    # No controlling terminal (a new session) and standard input at its end: getpass's
    # EOFError used to end the command in a 30-line traceback (after a warning and the prompt).
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    environ |= {"PAYGATE_DATABASE_URL": env, "PAYGATE_DATA_DIR": str(tmp_path), "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}
    r = subprocess.run([sys.executable, "-m", "paygate_server", "operators", "create", "--email", new_email("tty"),
                        "--role", "viewer"], env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=120, start_new_session=True)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("paygate: no terminal to ask the password at") and len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (["--email", "nope", "--role", "viewer"], PASSWORD, "not an email address"),
    # An email is shown on every console page (SPEC §12: never a card number); not repeated.
    (["--email", "4242424242424242@example.com", "--role", "viewer"], PASSWORD, "must not hold a card number"),
    (["--email", "a@example.com", "--role", "root"], PASSWORD, "no role 'root': one of admin, support, viewer"),
    (["--email", "a@example.com", "--role", "viewer"], "short", "at least 12 characters"),
    (["--email", "a@example.com", "--role", "viewer"], "", "at least 12 characters"),
])
def test_create_refusals(env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                         args: list[str], stdin: str, says: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin + "\n"))
    assert main(["operators", "create", *args, "--password-stdin"]) == 2
    _one_line_refusal(capsys, says)


class _EndlessInput(io.TextIOBase):
    """Standard input that never ends a line (``--password-stdin < /dev/zero``)."""

    def readline(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            raise AssertionError("a read without a bound never returns on this input")
        return "0" * size


def test_a_password_line_that_never_ends_is_refused(env: str, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Once: readline() with no bound, which on /dev/zero read until memory ran out.
    monkeypatch.setattr("sys.stdin", _EndlessInput())
    assert main(["operators", "create", "--email", new_email("zero"), "--role", "viewer", "--password-stdin"]) == 2
    _one_line_refusal(capsys, "at most 1024 characters")


def test_duplicate_and_unknown(env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    email = new_email("dup")
    for expected in (0, 2):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main(["operators", "create", "--email", email, "--role", "viewer", "--password-stdin"]) == expected
    _one_line_refusal(capsys, f"there is already an operator {email}")
    assert main(["operators", "disable", "--email", "nobody@example.com"]) == 2
    _one_line_refusal(capsys, "no operator nobody@example.com")
    assert main(["operators", "disable", "--email", "bad address"]) == 2
    _one_line_refusal(capsys, "not an email address")


def test_console_refuses_a_taken_port(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["console", "--port", str(port)]) == 2
    _one_line_refusal(capsys, f"cannot listen on 127.0.0.1:{port}")


def test_console_refuses_a_missing_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("PAYGATE_DATABASE_URL", raising=False)
    monkeypatch.setenv("PAYGATE_DATA_DIR", str(tmp_path / "typo"))
    assert main(["console", "--port", "0"]) == 2
    _one_line_refusal(capsys, "paygate db upgrade")


@pytest.mark.parametrize("origin", ["console.example.com", "https://console.example.com/path", "ftp://x.example",
                                    "https://user@console.example.com", "https://console.example.com:abc",
                                    "https://:443", "https://console.example.com:99999",
                                    "https://[::1"])  # (once "paygate: Invalid IPv6 URL", naming nothing)
def test_console_refuses_a_malformed_origin(env: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], origin: str) -> None:
    monkeypatch.setenv("PAYGATE_CONSOLE_ORIGIN", origin)
    assert main(["console", "--port", "0"]) == 2
    _one_line_refusal(capsys, "PAYGATE_CONSOLE_ORIGIN must be an origin")


def test_console_listens_on_127_0_0_1_8083_unless_told() -> None:
    """SPEC §9: ``paygate console [--host --port]``, 127.0.0.1:8083 by default."""
    from paygate_server.cli import build_parser

    args = build_parser().parse_args(["console"])
    assert (args.host, args.port) == ("127.0.0.1", 8083)
    args = build_parser().parse_args(["console", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
