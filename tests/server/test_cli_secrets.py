"""argparse's refusals never echo a secret typed on the command line (cli_parser)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from paygate_server.cli_parser import scrub
from tests.support.cli_in_process import PaygateInProcess

SECRET = "sk_test_SECRET123abcdefGHIJKL4567"


@pytest.fixture
def paygate(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> PaygateInProcess:
    """``paygate …`` through its entry point in this process (tests/support/cli_in_process.py):
    these refusals come from the parser and the commands' checks, not from the process."""
    return PaygateInProcess(monkeypatch, capfd)
ADD = ["processors", "add", "--merchant", "mer_1", "--kind", "stripe", "--name", "Main"]


@pytest.mark.parametrize("args", [
    [*ADD, "--credential", f"secretKey={SECRET}", "--bogus"],            # an unknown option after it
    [*ADD, "--credentials", f"secretKey={SECRET}"],                      # the option misspelt
    [*ADD, f"--credentails=secretKey={SECRET}"],                         # misspelt, with "="
    [*ADD, f"secretKey={SECRET}"],                                       # the option forgotten
    [*ADD, SECRET],                                                      # the secret alone
    [*ADD, "--json", "--cred", SECRET, "--json=yes"],                    # an abbreviation; a bad flag
    [*ADD, f"--json={SECRET}"],                                          # ignored explicit argument
    ["processors", "add", "--kind", "stripe", "--credential", f"secretKey={SECRET}"],  # required missing
    ["--credential", f"secretKey={SECRET}", "processors", "add"],        # before the command
    ["processors", SECRET],                                              # in a command's place
    ["bench", "--metrics-token", "hunter", "--duration", "soon"],        # another secret option
], ids=lambda args: " ".join(args)[-40:])
def test_a_refused_command_line_never_echoes_a_secret(args: list[str], paygate: PaygateInProcess) -> None:
    r = paygate(*args, env={})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "error:" in r.stderr, r.stderr
    for secret in (SECRET, "SECRET123", "hunter"):
        assert secret not in r.stderr, r.stderr


def test_a_refusal_keeps_what_helps_and_cannot_be_a_secret() -> None:
    # A mistyped command name and a bad number stay in the message: they are what to fix.
    assert scrub("invalid choice: 'procesors'", ["procesors", "add"]) == "invalid choice: 'procesors'"
    assert scrub("invalid int value: '-3'", ["--seeds", "-3"]) == "invalid int value: '-3'"
    assert scrub("unrecognized arguments: --x Abc9", ["--x", "Abc9"]) == "unrecognized arguments: --x …"
    # A secret option's value is hidden even when it looks harmless.
    assert scrub("unrecognized arguments: word", ["--credential", "word"]) == "unrecognized arguments: …"
    # Whole values only: a one-letter value does not eat the message's letters.
    assert scrub("argument COMMAND: invalid choice", ["A"]) == "argument COMMAND: invalid choice"


def test_an_origin_holding_credentials_is_refused_without_repeating_them(tmp_path: Path,
                                                                          paygate: PaygateInProcess) -> None:
    """`merchants create --origin https://user:pass@shop.example` was refused with the
    value in the message: the password went on to the terminal's scroll-back or a CI log."""
    env = {"PAYGATE_DATA_DIR": str(tmp_path)}
    upgrade = paygate("db", "upgrade", env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    r = paygate("merchants", "create", "--name", "Shop", "--origin", f"https://shop:{SECRET}@shop.example", env=env)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "credentials" in r.stderr, r.stderr
    assert SECRET not in r.stderr and "SECRET123" not in r.stderr, r.stderr


def test_a_name_or_webhook_url_holding_a_card_number_is_refused_without_repeating_it(
        tmp_path: Path, paygate: PaygateInProcess) -> None:
    """A merchant's name is shown on the console's pages and in the checkout frame (SPEC §5,
    §12: never a card number), as are webhook URLs and processor account names. The
    console's forms and the API refused one; the command line stored it."""
    env = {"PAYGATE_DATA_DIR": str(tmp_path)}
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return paygate(*args, env=env)
    assert run("db", "upgrade").returncode == 0
    r = run("merchants", "create", "--name", "Card 4242 4242 4242 4242", "--json")
    assert r.returncode == 2 and r.stdout == "" and "card number" in r.stderr, (r.stdout, r.stderr)
    assert "4242 4242" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    # The same for a webhook endpoint's URL (shown on the console's merchant and payment pages).
    merchant = json.loads(run("merchants", "create", "--name", "Shop", "--json").stdout)["merchantId"]
    env["PAYGATE_WEBHOOK_ALLOW_PRIVATE"] = "1"  # no DNS needed: the refusal comes first anyway
    r = run("webhooks", "create", "--merchant", merchant, "--url", "http://127.0.0.1:9/hook?c=4242424242424242")
    assert r.returncode == 2 and r.stdout == "" and "card number" in r.stderr, (r.stdout, r.stderr)
    assert "4242424242424242" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    # And a processor account's name (shown on the console's merchant page).
    r = run("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", "4242 4242 4242 4242",
            "--setting", "url=http://127.0.0.1:9")
    assert r.returncode == 2 and r.stdout == "" and "card number" in r.stderr, (r.stdout, r.stderr)
    assert "4242 4242" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
