"""``paygate processors …`` and ``paygate routing …`` (SPEC §7, §9) end to end, on SQLite and
(with PAYGATE_TEST_DATABASE_URL) PostgreSQL: the commands, their ``--json`` shapes, every
refusal as one line with exit status 2, and the credentials: sealed, shown never again,
in no output, error or column in the clear, and bound to their own account's row."""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from paygate_server.cli import main
from paygate_server.crypto import MasterKey, SealError
from paygate_server.processors import accounts
from paygate_server.storage import create_database
from paygate_server.storage.processor_accounts import AccountRow, get_account
from paygate_server.storage.schema import metadata
from tests.support.app import TEST_MASTER_KEY, use_cli_env
from tests.support.processes import make_merchant

URL = "http://127.0.0.1:9"
UNKNOWN_MERCHANT = "mer_0000000000000000000000nope"
UNKNOWN_ACCOUNT = "pa_00000000000000000000"
# An Adyen account: two credentials, and a connector that checks them when it is built.
ADYEN = ["--kind", "adyen", "--setting", "apiBase=https://checkout-test.adyen.com",
         "--setting", "merchantAccount=ShopECOM"]


@pytest.fixture
def operator_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    yield use_cli_env(monkeypatch, database_url, tmp_path)


@pytest.fixture
def merchant(operator_env: str) -> str:
    return make_merchant(operator_env).merchant_id


class Run:
    """``paygate`` in this process; every line it printed is kept for the secret scans."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.seen: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = self._capsys.readouterr()
        self.seen += [out.out, out.err]
        return code, out.out, out.err

    def ok(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 0 and err == "", (code, err)
        return out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def refused(self, *args: str) -> str:
        code, out, err = self(*args)
        assert code == 2 and out == "", (code, out, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("paygate: "), err
        return err.removeprefix("paygate: ").rstrip("\n")


@pytest.fixture
def paygate(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def add(paygate: Run, merchant: str, name: str = "Main", *extra: str) -> str:
    created = paygate.json("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", name,
                           "--setting", f"url={URL}", *extra)
    account: str = created["processorAccountId"]
    return account


def rules_file(tmp_path: Path, document: Any) -> str:
    path = tmp_path / f"rules-{secrets.token_hex(4)}.json"
    path.write_text(json.dumps(document))
    return str(path)


# ---- the commands ----------------------------------------------------------------------------

def test_add_prints_the_account_and_never_credentials(paygate: Run, merchant: str) -> None:
    created = paygate.json("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", "Main",
                           "--setting", f"url={URL}")
    assert set(created) == {"processorAccountId", "kind", "name"}
    # Opaque and random, at least 128 bits like every identifier (SPEC §2): 26 base32 characters.
    assert re.fullmatch(r"pa_[a-z2-7]{26}", created["processorAccountId"]), created
    assert (created["kind"], created["name"]) == ("simulator", "Main")

    out = paygate.ok("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", " Backup ",
                     "--setting", f"url={URL}")
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["processor account"].strip().startswith("pa_")
    assert lines["kind"].strip() == "simulator" and lines["name"].strip() == "Backup"
    assert lines["settings"].strip() == f"url={URL}"
    assert f"/processors/v1/{lines['processor account'].strip()}/webhooks" in lines["notifications"]
    assert "sealed" in lines["credentials"] and "not shown again" in lines["credentials"]


def test_list_shows_active_accounts_oldest_first(paygate: Run, merchant: str) -> None:
    assert paygate.json("processors", "list", "--merchant", merchant) == {"data": []}
    assert "no active processor accounts" in paygate.ok("processors", "list", "--merchant", merchant)
    first, second = add(paygate, merchant, "First"), add(paygate, merchant, "Second")
    listed = paygate.json("processors", "list", "--merchant", merchant)["data"]
    assert [a["processorAccountId"] for a in listed] == [first, second]
    assert set(listed[0]) == {"processorAccountId", "kind", "name", "settings", "created"}
    assert listed[0]["settings"] == {"url": URL} and listed[0]["name"] == "First"
    assert listed[0]["created"].endswith("Z") and listed[0]["created"] <= listed[1]["created"]
    lines = paygate.ok("processors", "list", "--merchant", merchant).splitlines()
    assert len(lines) == 2 and lines[0].startswith(first) and "First" in lines[0] and URL in lines[0]
    assert "created " + listed[0]["created"] in lines[0]


def test_remove_takes_the_account_out_of_the_list(paygate: Run, merchant: str) -> None:
    first, second = add(paygate, merchant), add(paygate, merchant)
    assert paygate.json("processors", "remove", "--merchant", merchant, "--account", first) == {
        "processorAccountId": first, "removed": True}
    assert [a["processorAccountId"] for a in paygate.json("processors", "list", "--merchant", merchant)["data"]] == [
        second]
    assert "refunded there" in paygate.ok("processors", "remove", "--merchant", merchant, "--account", second)
    assert paygate.refused("processors", "remove", "--merchant", merchant, "--account", second) == (
        f"merchant {merchant} has no processor account {second}")
    assert "no active processor accounts" in paygate.ok("processors", "list", "--merchant", merchant)
    # --all: the removed ones too, with when (their payments are still settled there).
    every = paygate.json("processors", "list", "--merchant", merchant, "--all")["data"]
    assert [a["processorAccountId"] for a in every] == [first, second]
    assert all(a["removed"].endswith("Z") and a["removed"] >= a["created"] for a in every)
    lines = paygate.ok("processors", "list", "--merchant", merchant, "--all").splitlines()
    assert lines[1].startswith(first) and ", removed " in lines[1] and lines[2].startswith(second)


def test_routing_set_and_show(paygate: Run, merchant: str, tmp_path: Path) -> None:
    a, b = add(paygate, merchant), add(paygate, merchant)
    assert paygate.json("routing", "show", "--merchant", merchant) == {"merchantId": merchant, "rules": None}
    assert "in the order they were added" in paygate.ok("routing", "show", "--merchant", merchant)
    document = [{"when": {"currency": "eur", "brand": ["mastercard", "visa"], "amountMax": 50000}, "use": [a, b]},
                {"use": [b]}]
    stored = [{"when": {"currency": ["EUR"], "brand": ["mastercard", "visa"], "amountMax": 50000}, "use": [a, b]},
              {"use": [b]}]
    assert paygate.json("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, document)) == {
        "merchantId": merchant, "rules": stored}
    assert paygate.json("routing", "show", "--merchant", merchant) == {"merchantId": merchant, "rules": stored}
    assert paygate.ok("routing", "show", "--merchant", merchant).splitlines() == [
        f"1. currency EUR; brand mastercard, visa; amountMax 50000 -> {a}, {b}",
        f"2. every other payment -> {b}"]
    # Replaced as a whole; then the account no rule names can go.
    paygate.ok("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, [{"use": [b]}]))
    assert paygate.json("routing", "show", "--merchant", merchant)["rules"] == [{"use": [b]}]
    paygate.ok("processors", "remove", "--merchant", merchant, "--account", a)


def test_routing_clear_is_the_way_back_to_no_account(paygate: Run, merchant: str, tmp_path: Path) -> None:
    a = add(paygate, merchant)
    paygate.ok("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, [{"use": [a]}]))
    paygate.refused("processors", "remove", "--merchant", merchant, "--account", a)
    assert paygate.json("routing", "clear", "--merchant", merchant) == {"merchantId": merchant, "cleared": True}
    assert paygate.json("routing", "show", "--merchant", merchant)["rules"] is None
    paygate.ok("processors", "remove", "--merchant", merchant, "--account", a)
    assert paygate.ok("routing", "clear", "--merchant", merchant) == "there were no routing rules\n"


def test_routing_clear_says_where_payments_go_now(paygate: Run, merchant: str, tmp_path: Path) -> None:
    # Once one sentence for both cases: "… in the order they were added (none: the default
    # processor)", which read as if the accounts were to be ignored.
    a = add(paygate, merchant)
    paygate.ok("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, [{"use": [a]}]))
    assert paygate.ok("routing", "clear", "--merchant", merchant) == (
        f"routing rules removed: every payment goes to the active processor accounts in the order they were added ({a})\n")
    paygate.ok("processors", "remove", "--merchant", merchant, "--account", a)
    assert paygate.ok("routing", "show", "--merchant", merchant) == (
        "no routing rules: no processor accounts either, so payments go to the gateway's default processor "
        "(PAYGATE_PROCESSOR_URL)\n")


def test_routing_set_reads_standard_input(paygate: Run, merchant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a = add(paygate, merchant)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([{"use": [a]}])))
    assert paygate.json("routing", "set", "--merchant", merchant, "--file", "-")["rules"] == [{"use": [a]}]


def test_routing_show_without_accounts_names_the_default(paygate: Run, merchant: str) -> None:
    assert "PAYGATE_PROCESSOR_URL" in paygate.ok("routing", "show", "--merchant", merchant)


# ---- every refusal: one line, exit 2 ----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["processors", "add", "--merchant", "{m}", "--kind", "simulator", "--name", "X", "--setting", f"url={URL}"],
    ["processors", "list", "--merchant", "{m}"],
    ["processors", "remove", "--merchant", "{m}", "--account", UNKNOWN_ACCOUNT],
    ["routing", "show", "--merchant", "{m}"],
    ["routing", "clear", "--merchant", "{m}"],
    ["routing", "set", "--merchant", "{m}", "--file", "{rules}"],
], ids=lambda a: " ".join(a[:2]))
def test_unknown_merchant(paygate: Run, operator_env: str, tmp_path: Path, args: list[str]) -> None:
    rules = rules_file(tmp_path, [{"use": [UNKNOWN_ACCOUNT]}])
    assert paygate.refused(*[a.format(m=UNKNOWN_MERCHANT, rules=rules) for a in args]) == (
        f"no merchant {UNKNOWN_MERCHANT}")


@pytest.mark.parametrize(("extra", "message"), [
    (["--kind", "paypal", "--setting", f"url={URL}"], "unknown processor kind 'paypal' (kinds: simulator, stripe, adyen)"),
    (["--kind", "simulator"], "simulator needs the setting 'url'"),
    (["--kind", "simulator", "--setting", "url="], "simulator needs the setting 'url'"),
    (["--kind", "simulator", "--setting", "url=ftp://127.0.0.1:9"],
     "the simulator connector needs an http(s)://host[:port][/path] URL"),
    (["--kind", "simulator", "--setting", f"url={URL}", "--setting", "region=eu"],
     "simulator has no setting 'region' (settings: url)"),
    (["--kind", "simulator", "--setting", f"url={URL}", "--credential", "apiKey=k"],
     "simulator has no credential 'apiKey' (credentials: none)"),
    # Once urlsplit's "Invalid IPv6 URL" and "Port out of range 0-65535", naming no setting.
    (["--kind", "simulator", "--setting", "url=http://[::1"],
     "the simulator connector needs an http(s)://host[:port][/path] URL"),
    (["--kind", "simulator", "--setting", "url=http://sim.example:99999"],
     "the simulator connector needs an http(s)://host[:port][/path] URL"),
    (["--kind", "simulator", "--setting", "url"], "--setting must be NAME=VALUE, not 'url'"),
    (["--kind", "simulator", "--setting", "=x"], "--setting must be NAME=VALUE, not '=x'"),
    (["--kind", "simulator", "--setting", f"url={URL}", "--setting", f"url={URL}"], "--setting url is given twice"),
    (["--kind", "simulator", "--setting", f"url={URL}", "--credential", "justthesecret"],
     "--credential must be NAME=VALUE or NAME=@FILE"),
    (["--kind", "simulator", "--setting", f"url={URL}", "--credential", "a=@/nonexistent/key"],
     "--credential a: no file /nonexistent/key"),
], ids=lambda v: " ".join(v[:4]) if isinstance(v, list) else None)
def test_add_refusals(paygate: Run, merchant: str, extra: list[str], message: str) -> None:
    assert paygate.refused("processors", "add", "--merchant", merchant, "--name", "X", *extra) == message
    assert paygate.json("processors", "list", "--merchant", merchant) == {"data": []}


def test_a_secret_file_is_read_no_further_than_a_secret_can_be(paygate: Run, merchant: str, tmp_path: Path) -> None:
    # Once: read whole, so --credential secretKey=@/dev/zero (or a FIFO) read until memory ran out.
    big = tmp_path / "big.key"
    big.write_text("k" * (64 * 1024 + 1))
    assert paygate.refused("processors", "add", "--merchant", merchant, "--name", "X", "--kind", "stripe",
                           "--credential", f"secretKey=@{big}") == (
        f"--credential secretKey: {big} is larger than 64 KiB: not a secret")
    assert paygate.refused("processors", "add", "--merchant", merchant, "--name", "X", "--kind", "stripe",
                           "--credential", f"secretKey=@{tmp_path}") == (
        f"--credential secretKey: {tmp_path} is a folder, not a secret")
    assert paygate.json("processors", "list", "--merchant", merchant) == {"data": []}


@pytest.mark.parametrize("name", ["", "   ", "tab\there", "x" * 201])
def test_add_refuses_a_bad_name(paygate: Run, merchant: str, name: str) -> None:
    assert paygate.refused("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", name,
                           "--setting", f"url={URL}") == "the name must be 1 to 200 printable characters"


def test_a_kind_whose_module_is_absent_is_one_line(paygate: Run, merchant: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from paygate_server.processing import connectors

    monkeypatch.setattr(connectors, "KINDS", (*connectors.KINDS, "nosuchprocessor"))
    assert paygate.refused("processors", "add", "--merchant", merchant, "--kind", "nosuchprocessor",
                           "--name", "X") == "processor kind 'nosuchprocessor' is not available in this installation"


def test_add_refuses_credentials_of_the_wrong_name(paygate: Run, merchant: str) -> None:
    line = paygate.refused("processors", "add", "--merchant", merchant, "--name", "X", *ADYEN,
                           "--credential", "apiKey=k", "--credential", "hmacKey=00", "--credential", "apikey=k")
    assert line == "adyen has no credential 'apikey' (credentials: apiKey, hmacKey)"


def test_adyen_accounts_are_checked_by_building_their_connector(paygate: Run, merchant: str) -> None:
    base = ["processors", "add", "--merchant", merchant, "--name", "Adyen"]
    hmac_key = secrets.token_hex(32)
    assert paygate.refused(*base, *ADYEN[:4], "--credential", "apiKey=k", "--credential", f"hmacKey={hmac_key}") == (
        "adyen needs the setting 'merchantAccount'")
    assert paygate.refused(*base, *ADYEN, "--credential", "apiKey=k") == "adyen needs the credential 'hmacKey'"
    # What only the connector knows: refused now, not at a customer's payment.
    assert paygate.refused(*base, *ADYEN, "--credential", "apiKey=k", "--credential", "hmacKey=not-hex") == (
        "the adyen credential 'hmacKey' is not hexadecimal")
    assert paygate.refused(*base, "--kind", "adyen", "--setting", "apiBase=checkout-test.adyen.com",
                           "--setting", "merchantAccount=M", "--credential", "apiKey=k",
                           "--credential", f"hmacKey={hmac_key}") == (
        "the adyen connector needs an http(s)://host[:port][/path] apiBase")
    assert paygate.json("processors", "list", "--merchant", merchant) == {"data": []}
    created = paygate.json(*base, *ADYEN, "--credential", "apiKey=k", "--credential", f"hmacKey={hmac_key}")
    assert created == {"processorAccountId": created["processorAccountId"], "kind": "adyen", "name": "Adyen"}
    (listed,) = paygate.json("processors", "list", "--merchant", merchant)["data"]
    assert listed["settings"] == {"apiBase": "https://checkout-test.adyen.com", "merchantAccount": "ShopECOM"}
    assert hmac_key not in "".join(paygate.seen)


def test_stripe_accounts_get_the_default_api_base(paygate: Run, merchant: str) -> None:
    base = ["processors", "add", "--merchant", merchant, "--name", "Stripe", "--kind", "stripe"]
    assert paygate.refused(*base, "--credential", "secretKey=sk_test_x") == (
        "stripe needs the credential 'webhookSecret'")
    created = paygate.json(*base, "--credential", "secretKey=sk_test_x", "--credential", "webhookSecret=whsec_x")
    assert created["kind"] == "stripe"
    (listed,) = paygate.json("processors", "list", "--merchant", merchant)["data"]
    assert listed["settings"] == {"apiBase": "https://api.stripe.com"}


def test_routing_file_refusals(paygate: Run, merchant: str, tmp_path: Path) -> None:
    a = add(paygate, merchant)
    missing = tmp_path / "nope.json"
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", str(missing)) == f"no file {missing}"
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", str(tmp_path)) == (
        f"{tmp_path} is a folder, not a rules file")
    broken = tmp_path / "broken.json"
    broken.write_text('[{"use": ["pa_x"]},\n')
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", str(broken)) == (
        f"{broken} is not JSON (Expecting value at line 2 column 1)")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe[]")
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", str(binary)) == (
        f"{binary} is not UTF-8 text")
    # Once a RecursionError traceback, and an endless read of /dev/zero.
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", str(deep)) == (
        f"{deep} is not a rules file (JSON nested too deeply)")
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", "/dev/zero") == (
        "/dev/zero is larger than 1024 KiB: not a rules file")
    # Not valid rules: the first problem named.
    invalid = rules_file(tmp_path, [{"when": {"currency": ["EUR"]}, "use": [a]}, {"when": {"brand": "x"}, "use": [a]}])
    assert paygate.refused("routing", "set", "--merchant", merchant, "--file", invalid) == (
        "rule 2: unknown brand 'x' (brands: visa, mastercard, amex, discover, jcb, diners, unionpay, unknown)")
    # An amount past 64 bits (the file is read with exact integers): once a TypeError
    # traceback when the rules were written as JSON.
    for amount in (2**64, 10**30):
        huge = rules_file(tmp_path, [{"when": {"amountMin": amount}, "use": [a]}, {"use": [a]}])
        assert paygate.refused("routing", "set", "--merchant", merchant, "--file", huge) == (
            f"rule 1: amountMin must be at most {2**64 - 1} (minor units)")
    assert paygate.json("routing", "show", "--merchant", merchant)["rules"] is None
    edge = rules_file(tmp_path, [{"when": {"amountMax": 2**64 - 1}, "use": [a]}, {"use": [a]}])
    assert paygate.json("routing", "set", "--merchant", merchant, "--file", edge)["rules"][0]["when"] == {
        "amountMax": 2**64 - 1}


def test_routing_refuses_accounts_not_this_merchants_active_ones(
        paygate: Run, operator_env: str, merchant: str, tmp_path: Path) -> None:
    other = make_merchant(operator_env, "Other").merchant_id
    theirs, mine, gone = add(paygate, other), add(paygate, merchant), add(paygate, merchant)
    paygate.ok("processors", "remove", "--merchant", merchant, "--account", gone)
    for index, account in ((1, theirs), (2, gone), (2, UNKNOWN_ACCOUNT)):
        document = [{"when": {"currency": ["EUR"]}, "use": [mine]}, {"use": [mine, account]}]
        if index == 1:
            document = [{"use": [account]}]
        assert paygate.refused("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, document)) == (
            f"rule {index}: {account} is not an active processor account of merchant {merchant}")
    assert paygate.json("routing", "show", "--merchant", merchant)["rules"] is None
    # Nor can one merchant remove another's account.
    assert paygate.refused("processors", "remove", "--merchant", merchant, "--account", theirs) == (
        f"merchant {merchant} has no processor account {theirs}")


def test_remove_refuses_an_account_the_rules_use(paygate: Run, merchant: str, tmp_path: Path) -> None:
    a, b = add(paygate, merchant), add(paygate, merchant)
    paygate.ok("routing", "set", "--merchant", merchant, "--file",
               rules_file(tmp_path, [{"when": {"amountMin": 100}, "use": [b, a]}, {"use": [b]}]))
    assert paygate.refused("processors", "remove", "--merchant", merchant, "--account", a) == (
        f"the routing rules use {a}: set rules without it first")
    assert paygate.refused("processors", "remove", "--merchant", merchant, "--account", UNKNOWN_ACCOUNT) == (
        f"merchant {merchant} has no processor account {UNKNOWN_ACCOUNT}")
    # Still active (the refused removal was rolled back).
    assert [x["processorAccountId"] for x in paygate.json("processors", "list", "--merchant", merchant)["data"]] == [
        a, b]


# ---- credentials: sealed, never shown, bound to their row ----------------------------------------

async def _read_rows(url: str, *ids: str) -> list[AccountRow]:
    db = create_database(url)
    try:
        async with db.read() as conn:
            rows = [await get_account(conn, i) for i in ids]
    finally:
        await db.dispose()
    assert all(rows)
    return [r for r in rows if r is not None]


async def _every_column_as_text(url: str) -> str:
    """Every row of every table, as text (bytes decoded as latin-1, so any bytes show)."""
    db = create_database(url)
    out: list[str] = []
    try:
        async with db.read() as conn:
            for table in metadata.sorted_tables:
                for row in (await conn.execute(table.select())).all():
                    out += [bytes(v).decode("latin-1") if isinstance(v, bytes | bytearray | memoryview) else str(v)
                            for v in row]
    finally:
        await db.dispose()
    return "\n".join(out)


async def _move_sealed(url: str, source: str, target: str) -> None:
    db = create_database(url)
    try:
        async with db.write() as conn:
            await conn.execute(text("UPDATE processor_accounts SET credentials_sealed = "
                                    "(SELECT credentials_sealed FROM processor_accounts WHERE id = :source) "
                                    "WHERE id = :target"), {"source": source, "target": target})
    finally:
        await db.dispose()


def test_credentials_appear_nowhere_in_the_clear(paygate: Run, operator_env: str, merchant: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api_key, hmac_key = f"ak_{secrets.token_hex(16)}", secrets.token_hex(32)
    key_file = tmp_path / "hmac.key"
    key_file.write_text(hmac_key + "\n")  # as `echo` writes it: the newline is not part of the key
    created = paygate.json("processors", "add", "--merchant", merchant, "--name", "Sealed", *ADYEN,
                           "--credential", f"apiKey={api_key}", "--credential", f"hmacKey=@{key_file}")
    account = created["processorAccountId"]
    paygate.ok("processors", "add", "--merchant", merchant, "--name", "Text", *ADYEN,
               "--credential", f"apiKey={api_key}", "--credential", f"hmacKey={hmac_key}")
    paygate.ok("processors", "list", "--merchant", merchant)
    paygate.json("processors", "list", "--merchant", merchant)
    paygate.ok("routing", "set", "--merchant", merchant, "--file", rules_file(tmp_path, [{"use": [account]}]))
    paygate.ok("routing", "show", "--merchant", merchant)
    # Refusals that had a secret in hand: typed without its name, or under a wrong name.
    base = ["processors", "add", "--merchant", merchant, "--name", "X", *ADYEN]
    paygate.refused(*base, "--credential", api_key)
    paygate.refused(*base, "--credential", f"{hmac_key}=={api_key}")  # a base64 key with its padding
    paygate.refused(*base, "--credential", f"apiKey={api_key}", "--credential", f"hmac={hmac_key}")
    paygate.refused(*base, "--credential", f"apiKey={api_key}")
    paygate.refused(*base, "--credential", f"apiKey={api_key}", "--credential", f"hmacKey={api_key}")  # not hex
    paygate.refused(*base[:9], "apiBase=ftp://x", *base[10:], "--credential", f"apiKey={api_key}",
                    "--credential", f"hmacKey={hmac_key}")
    paygate.refused(*base[:7], "paypal", *base[8:], "--credential", f"apiKey={api_key}", "--credential", f"hmacKey={hmac_key}")
    paygate.refused(*[a.replace(merchant, UNKNOWN_MERCHANT) for a in base],
                    "--credential", f"apiKey={api_key}", "--credential", f"hmacKey={hmac_key}")

    everything = "\n".join(paygate.seen) + caplog.text
    for secret in (api_key, hmac_key):
        assert secret not in everything
        assert secret[:12] not in everything  # not even a part
    columns = asyncio.run(_every_column_as_text(operator_env))
    assert account in columns  # the scan does see the rows
    for secret in (api_key, hmac_key):
        assert secret not in columns
    if operator_env.startswith("sqlite"):
        path = Path(operator_env.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))  # the file, its WAL and journal
        assert account.encode() in raw
        for secret in (api_key, hmac_key):
            assert secret.encode() not in raw

    # Sealed, yet really there: the account's own row opens to exactly what was given.
    master = MasterKey(bytes.fromhex(TEST_MASTER_KEY))
    (row,) = asyncio.run(_read_rows(operator_env, account))
    assert api_key.encode() not in row.credentials_sealed and hmac_key.encode() not in row.credentials_sealed
    assert "credentials" not in repr(row) and repr(row.credentials_sealed) not in repr(row)
    assert accounts.open_credentials(master, row) == {"apiKey": api_key, "hmacKey": hmac_key}


def test_a_sealed_blob_moved_to_another_row_does_not_open(paygate: Run, operator_env: str, merchant: str) -> None:
    def adyen(name: str, api_key: str) -> str:
        created = paygate.json("processors", "add", "--merchant", merchant, "--name", name, *ADYEN,
                               "--credential", f"apiKey={api_key}", "--credential", "hmacKey=00ff")
        account: str = created["processorAccountId"]
        return account

    first, second = adyen("First", "first-key"), adyen("Second", "second-key")
    master = MasterKey(bytes.fromhex(TEST_MASTER_KEY))
    asyncio.run(_move_sealed(operator_env, first, second))
    moved_first, moved_second = asyncio.run(_read_rows(operator_env, first, second))
    assert moved_second.credentials_sealed == moved_first.credentials_sealed  # the very blob, on another row
    assert accounts.open_credentials(master, moved_first)["apiKey"] == "first-key"
    with pytest.raises(SealError):
        accounts.open_credentials(master, moved_second)  # the account id is the associated data


# ---- the real command, as an operator runs it -------------------------------------------------

def test_as_a_subprocess(operator_env: str, merchant: str, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")},
           "PAYGATE_DATABASE_URL": operator_env, "PAYGATE_DATA_DIR": str(tmp_path), "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}

    def paygate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "paygate_server", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    r = paygate("processors", "add", "--merchant", merchant, "--kind", "simulator", "--name", "Main",
                "--setting", f"url={URL}", "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    account = json.loads(r.stdout)["processorAccountId"]
    r = paygate("routing", "set", "--merchant", merchant, "--file", "-", stdin=json.dumps([{"use": [account]}]))
    assert r.returncode == 0 and f"1. every other payment -> {account}" in r.stdout, r.stderr
    r = paygate("processors", "remove", "--merchant", merchant, "--account", account)
    assert r.returncode == 2 and r.stdout == "" and r.stderr == (
        f"paygate: the routing rules use {account}: set rules without it first\n")
    r = paygate("routing", "set", "--merchant", merchant, "--file", "-", stdin="[")
    assert r.returncode == 2 and r.stderr.startswith("paygate: standard input is not JSON") and "Traceback" not in r.stderr
