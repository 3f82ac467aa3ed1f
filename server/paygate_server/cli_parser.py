"""The ``paygate`` argument parser's refusals: one line, exit status 2, no secrets.

argparse echoes what was typed when it refuses a command line: ``unrecognized arguments:
--credentials secretKey=sk_live_…`` (a misspelt option), ``invalid choice: '…'`` (a value
in a command's place), ``ignored explicit argument '…'``. A secret typed on the command line
would then land in a terminal's scroll-back, a CI log or a support ticket. So a refusal
names options but keeps only the values that cannot be secrets: lowercase words and plain
numbers (``invalid choice: 'procesors'`` stays useful), never the value of an option in
:data:`SECRET_OPTIONS` however it is abbreviated, never anything else typed.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

__all__ = ["DAY_S", "Parser", "SECRET_OPTIONS", "HIDDEN", "file_descriptor", "port_number", "scrub", "seconds",
           "whole_number"]

#: Options whose value is a secret (SPEC §7: ``--credential NAME=VALUE``; §10: the bench's
#: ``--metrics-token``).
SECRET_OPTIONS = frozenset({"--credential", "--metrics-token"})
HIDDEN = "…"

# Safe to echo: a word such as a mistyped command name, or a number (a secret is neither:
# keys and tokens carry digits, capitals, "_" or "=" and are longer).
_SAFE = re.compile(r"[a-z][a-z-]{0,23}|-?\d{1,12}")

# The command line being parsed, set by the outermost parse so that a sub-command's parser
# (argparse makes one per command, each refusing on its own) scrubs against all of it.
_typed: ContextVar[Sequence[str] | None] = ContextVar("paygate_cli_typed", default=None)
# The last parser that parsed (a sub-command's, when one was given): the one whose --help
# lists the options an unrecognized argument was meant to be.
_innermost: ContextVar[argparse.ArgumentParser | None] = ContextVar("paygate_cli_innermost", default=None)


def _is_secret_option(name: str) -> bool:
    # argparse accepts any unambiguous prefix of a long option (``--cred``), so a prefix
    # of a secret option carries a secret too (``--c`` is ambiguous enough to include).
    return len(name) > 2 and any(option.startswith(name) for option in SECRET_OPTIONS)


def _hidden_values(typed: Sequence[str]) -> set[str]:
    hidden: set[str] = set()
    secret_next = False
    for token in typed:
        if secret_next:
            hidden.add(token)  # always, even a harmless-looking word
            secret_next = False
            continue
        if token.startswith("-") and not _SAFE.fullmatch(token):
            name, equals, value = token.partition("=")
            if equals and (_is_secret_option(name) or not _SAFE.fullmatch(value)):
                hidden.add(value)
            elif not equals:
                secret_next = _is_secret_option(name)
            continue
        if not _SAFE.fullmatch(token):
            hidden.add(token)
    hidden.discard("")
    return hidden


def scrub(message: str, typed: Sequence[str]) -> str:
    """``message`` with every value from ``typed`` that may be a secret replaced."""
    for value in sorted(_hidden_values(typed), key=len, reverse=True):
        # Whole values only, so a one-letter value does not eat letters of the message.
        message = re.sub(rf"(?<![\w]){re.escape(value)}(?![\w])", HIDDEN, message)
    return message


@contextmanager
def _typing(args: Sequence[str]) -> Iterator[None]:
    token = _typed.set(args) if _typed.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _typed.reset(token)


class Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose refusals are one scrubbed line.

    Sub-command parsers are made of the same class (``add_subparsers`` uses the parent's).
    Options are taken only as spelt out: argparse would take ``--nam`` for ``--name``, and a
    later option sharing the prefix would silently change what an operator's script means."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    # Both: ``parse_args`` refuses unrecognized arguments after ``parse_known_args`` returns.
    # argparse refuses them as the top-level parser (`paygate serve --prot 1` said "see paygate
    # --help", which lists no option of serve's); the sub-command's parser refuses them here.
    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: Any = None) -> argparse.Namespace:
        typed = list(sys.argv[1:] if args is None else args)
        with _typing(typed):
            innermost = _innermost.set(None)
            try:
                parsed, unrecognized = self.parse_known_args(typed, namespace)
                if unrecognized:
                    (_innermost.get() or self).error(f"unrecognized arguments: {' '.join(unrecognized)}")
                return parsed
            finally:
                _innermost.reset(innermost)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        typed = list(sys.argv[1:] if args is None else args)
        _innermost.set(self)
        with _typing(typed):
            return super().parse_known_args(typed, namespace)

    def error(self, message: str) -> NoReturn:
        typed = _typed.get()
        if typed is None:
            typed = sys.argv[1:]
        line = scrub(message, typed).replace("\n", " ")
        self.exit(2, f"{self.prog}: error: {line} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    """An argparse ``type`` for a TCP port: 0 (any free port) to 65535, refused at parse time
    (a larger one used to reach ``socket.bind`` and end in an OverflowError traceback)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise argparse.ArgumentTypeError("must be a port number from 0 to 65535")
    return int(text)


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse ``type`` for a count from ``minimum`` to ``maximum``, refused at parse time
    (not as a database error or a traceback further on)."""
    # A length bound before int(): int() of thousands of digits is slow, then a ValueError.
    longest = max(12, len(str(minimum)), len(str(maximum)))

    def parse(text: str) -> int:
        if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= longest) or not minimum <= int(text) <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from {minimum} to {maximum}")
        return int(text)
    parse.__name__ = "whole number"  # argparse names the type in some refusals
    return parse


def file_descriptor(text: str) -> int:
    """An argparse ``type`` for ``--fd`` (an inherited listening socket): 0 to the largest
    C int, refused at parse time (``--fd 99999999999999999999`` reached ``os.dup`` and was
    an OverflowError traceback, after the database checks had run)."""
    return _FD(text)


_FD = whole_number(0, 2**31 - 1)


DAY_S = 86_400.0  # the longest wait or run an option takes: anything longer is a typo


def seconds(maximum: float, *, zero: bool = True) -> Callable[[str], float]:
    """An argparse ``type`` for a duration (or a rate) up to ``maximum``: a finite number,
    0 or more (more than 0 with ``zero=False``), refused at parse time ("nan", "inf" and
    "-1" parse as floats and would reach a timer)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not ((0 <= value if zero else 0 < value) and value <= maximum):
            low = "0" if zero else "more than 0"
            top = f"{int(maximum):,}" if maximum.is_integer() else str(maximum)
            raise argparse.ArgumentTypeError(f"must be a number from {low} to {top}")
        return value
    parse.__name__ = "number"  # argparse names the type in some refusals
    return parse
