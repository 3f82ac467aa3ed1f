"""Garbage arguments for every ``paygate`` command (walked from the parser: a new command is
fuzzed without being listed here): each must exit non-zero with one line on stderr that
starts ``paygate:`` (or ``paygate <command>: error:``, the parser's), nothing on stdout, no traceback and no card number echoed.

Every example carries at least one thing that cannot be right — an option no command has,
a typed option's unreadable value, a merchant, intent or operator that does not exist, a
date that is no date — so nothing legitimately succeeds (or starts a server), while the
other arguments are of every shape. The default suite runs ``main()`` in this process (the
same code as the console script, without an interpreter's start per example); the slow set
(``-m slow``) runs ``python -m paygate_server`` as a child process.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paygate_server.cli import build_parser, main
from tests.support.app import TEST_MASTER_KEY
from tests.support.databases import migrated_database_url
from tests.support.hostile import CARD_NUMBERS, assert_no_leak, text_values
from tests.support.slow_set import is_slow_run

pytestmark = pytest.mark.slow


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(prefix, parser)]
    return [leaf for s in subs for name, sub in s.choices.items() for leaf in _leaves(sub, (*prefix, name))]


COMMANDS = _leaves(build_parser())
# Values that no command takes where these options are (the poison of an example).
POISON_VALUES = {"--merchant": "mer_" + "0" * 26, "--email": "nobody-here@example.invalid",
                 "--date": "2026-13-45", "--port": "-1", "--workers": "many", "--limit": "-5",
                 "--wait": "NaN", "--lease-timeout": "-1e309", "--seeds": "x", "--file": "/nonexistent/rules.json",
                 "--key": "pk_test_" + "0" * 24, "--account": "pa_" + "0" * 26, "--kind": "no-such-processor"}


@st.composite
def command_lines(draw: st.DrawFn, words: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    args: list[str] = list(words)
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    for _positional in positionals:
        args.append(draw(text_values.filter(lambda v: v and not v.startswith("-"))))
    for action in draw(st.lists(st.sampled_from(options), max_size=4)) if options else []:
        name = action.option_strings[-1]
        if action.nargs == 0:
            args.append(name)
        else:
            args += [name, draw(text_values | st.sampled_from(CARD_NUMBERS))]
    poisonable = [a.option_strings[-1] for a in options if a.option_strings[-1] in POISON_VALUES]
    poison = draw(st.sampled_from(["--no-such-option", *poisonable]))
    if poison == "--no-such-option":
        args.insert(draw(st.integers(len(words), len(args))), "--no-such-option")
    else:  # last on the line, so it is the value argparse keeps
        args += [poison, POISON_VALUES[poison]]
    return [a.replace("\x00", "") for a in args]  # a command line cannot hold a NUL


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("cli")
    url = migrated_database_url("sqlite", data_dir)
    return {"PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(data_dir), "PAYGATE_MASTER_KEY": TEST_MASTER_KEY,
            "PAYGATE_PROCESSOR_URL": "http://127.0.0.1:9"}


def _check(argv: list[str], code: int, out: str, err: str) -> None:
    assert code != 0, (argv, out, err)
    assert out == "", (argv, out)
    lines = err.splitlines()
    # "paygate: …" from a command, "paygate keys revoke: error: …" from the parser.
    assert len(lines) == 1 and re.match(r"paygate( [a-z-]+)*: ", lines[0]), (argv, err)
    assert_no_leak(err)


@pytest.mark.parametrize(("words", "parser"), COMMANDS, ids=[" ".join(w) for w, _ in COMMANDS])
def test_garbage_arguments(words: tuple[str, ...], parser: argparse.ArgumentParser, cli_env: dict[str, str],
                           request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    slow = is_slow_run(request.config, {m.name for m in request.node.iter_markers()})
    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)

    @settings(max_examples=3 if slow else 2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(argv=command_lines(words, parser))
    def fuzz(argv: list[str]) -> None:
        if slow:
            env = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")} | cli_env
            r = subprocess.run([sys.executable, "-m", "paygate_server", *argv], env=env, capture_output=True,
                               text=True, errors="replace", timeout=60, stdin=subprocess.DEVNULL)
            _check(argv, r.returncode, r.stdout, r.stderr)
            return
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out, err = capsys.readouterr()
        _check(argv, code, out, err)

    fuzz()


def test_the_walk_finds_the_commands() -> None:
    found = {" ".join(words) for words, _ in COMMANDS}
    assert {"merchants create", "keys revoke", "serve", "audit show", "operators create"} <= found
    assert all(not Path(w).exists() for w in found)


@pytest.mark.parametrize("argv", [
    ["keys", "revoke", "--merchant", "4242424242424242", "--key", "pk_test_" + "0" * 24],
    ["reconcile", "settlement", "--date", "4242 4242 4242 4242"],
    ["operators", "create", "--role", "5555-5555-5555-4444", "--email", "a@example.com"],
], ids=["merchant", "date", "role"])
def test_a_card_number_typed_in_the_wrong_place_is_not_echoed(
        argv: list[str], cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Once: ``paygate: no merchant 4242424242424242`` — a command's refusal named what was
    typed, card number and all (the parser's refusals already hid it)."""
    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    _check(argv, 2, out, err)
    assert "…" in err, err


def test_a_control_character_typed_is_escaped_not_printed(cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Once: ``--merchant $'\\r0'`` printed ``paygate: no merchant `` and ``0`` on two lines
    (and an escape sequence typed would have reached the terminal as one)."""
    for name, value in cli_env.items():
        monkeypatch.setenv(name, value)
    argv = ["processors", "remove", "--merchant", "\r0\n\x1b[2J", "--account", "pa_" + "0" * 26]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    _check(argv, 2, out, err)
    assert "\x1b" not in err and "\\r0\\n\\x1b[2J" in err, err
