"""What must never appear in a log line (SPEC §5, §3, §6; CONVENTIONS): card numbers, CVCs,
signing and webhook secrets, client secrets and signature values — and a pytest fixture that
scans every log file the spawned server processes of a test module wrote.

The fixture reads every ``*.log`` under the session's base temporary directory (where
``ServiceProcess`` children write: ``tmp_path``/``tmp_path_factory`` folders) after each
module, from where the previous scan stopped, so each line is judged once.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["SessionLogs", "leaks_in", "scan_server_logs"]

# 13–19 digits, optionally in groups split by one space or dash ("4242 4242 4242 4242").
_DIGIT_RUN = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
_PATTERNS = {
    "cvc field": re.compile(r"""cvc["']?\s*[:=]\s*["']?\d{3,4}""", re.IGNORECASE),
    "signing secret": re.compile(r"\bsk_(?:test|live)_[A-Za-z0-9]"),
    "webhook secret": re.compile(r"whsec_[A-Za-z0-9+/=]"),
    "client secret": re.compile(r"_secret_[A-Za-z0-9]|clientSecret", re.IGNORECASE),
    "request signature": re.compile(r"sha256=[0-9a-f]{64}"),
    "webhook signature": re.compile(r"\bv1,[A-Za-z0-9+/]{20,}={0,2}"),
}


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def leaks_in(line: str) -> list[str]:
    """The kinds of secret ``line`` contains (empty: clean)."""
    found = [kind for kind, pattern in _PATTERNS.items() if pattern.search(line)]
    for match in _DIGIT_RUN.finditer(line):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            found.append("card number")
            break
    return found


class SessionLogs:
    """Log lines read so far in this test session (per xdist worker)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.offsets: dict[Path, int] = {}
        self.lines = 0
        self.request_lines = 0

    def scan_new(self) -> list[str]:
        """Read what was appended to every log since the last call; the offending lines."""
        bad: list[str] = []
        for path in sorted(self.root.rglob("*.log")):
            start = self.offsets.get(path, 0)
            try:
                with path.open("rb") as f:
                    f.seek(start)
                    data = f.read()
            except OSError:
                continue
            complete = data.rfind(b"\n") + 1  # a line still being written waits for next time
            self.offsets[path] = start + complete
            for line in data[:complete].decode("utf-8", "replace").splitlines():
                self.lines += 1
                self.request_lines += "paygate.request" in line
                kinds = leaks_in(line)
                if kinds:
                    bad.append(f"{path.name}: {', '.join(kinds)}: {line[:300]}")
        return bad

    def assert_clean(self) -> None:
        bad = self.scan_new()
        assert not bad, "secrets in server logs:\n" + "\n".join(bad)


_SESSION_KEY = pytest.StashKey[SessionLogs]()


@pytest.fixture(scope="module", autouse=False)
def scan_server_logs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionLogs]:
    """After the module: no secret in any line the module's server processes logged."""
    stash = request.config.stash
    if _SESSION_KEY not in stash:
        stash[_SESSION_KEY] = SessionLogs(tmp_path_factory.getbasetemp())
    logs = stash[_SESSION_KEY]
    yield logs
    logs.assert_clean()
