"""Processor accounts (``pa_…``) and routing rules: the operations behind the CLI (SPEC §7, §9).

Credentials are sealed under the master key (purpose :data:`CREDENTIALS_PURPOSE`, the
account id as associated data) before anything is written, and opened only to build the
account's connector: no function here returns them, and no error names a value.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.cards.pan import contains_card_number
from paygate_server.clock import now_us
from paygate_server.crypto import MasterKey
from paygate_server.ids import new_id
from paygate_server.processing.connectors import ConnectorKind, connector_kind
from paygate_server.processors.routing import RulesInvalid, parse_rules, render_rules
from paygate_server.storage import Database
from paygate_server.storage.merchants import get_merchant
from paygate_server.storage.processor_accounts import (
    AccountRow,
    delete_rules,
    get_rules,
    hold_active,
    insert_account,
    list_accounts,
    mark_removed,
    set_rules,
)

__all__ = ["CREDENTIALS_PURPOSE", "AccountError", "ProcessorAccount", "add_account", "clear_routing",
           "list_processor_accounts", "open_credentials", "remove_account", "set_routing", "show_routing"]

CREDENTIALS_PURPOSE = "processor-credentials"
_MAX_NAME = 200
_MAX_VALUE = 2000


class AccountError(ValueError):
    """A refused account or routing change; the text is one line for the operator."""


@dataclass(frozen=True, slots=True)
class ProcessorAccount:
    id: str
    merchant_id: str
    kind: str
    name: str
    settings: dict[str, str]
    created_at: int
    removed_at: int | None

    @classmethod
    def of(cls, row: AccountRow) -> ProcessorAccount:
        return cls(row.id, row.merchant_id, row.kind, row.name, jsoncodec.loads(row.settings), row.created_at,
                   row.removed_at)


def open_credentials(master: MasterKey, row: AccountRow) -> dict[str, str]:
    credentials: dict[str, str] = jsoncodec.loads(master.open(CREDENTIALS_PURPOSE, row.credentials_sealed,
                                                              row.id.encode()))
    return credentials


def _strings(what: str, values: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or len(value) > _MAX_VALUE:
            raise AccountError(f"each {what} must be NAME=VALUE with a value of at most {_MAX_VALUE} characters")
        out[key] = value
    return out


async def _merchant_exists(db: Database, merchant_id: str) -> None:
    async with db.read() as conn:
        if await get_merchant(conn, merchant_id) is None:
            raise AccountError(f"no merchant {merchant_id}")


async def _check_builds(kind: ConnectorKind, settings: dict[str, str], credentials: dict[str, str]) -> None:
    """Build the connector once (no request is sent) so that a setting or credential its
    connector refuses (an Adyen hmacKey that is not hex, an apiBase that is not a URL)
    fails here, in front of the operator, rather than at a customer's payment."""
    try:
        built = kind.build(settings, credentials)
    except ValueError as exc:
        message = str(exc)
        # Connectors name a credential, never its value; should one ever slip, say less.
        if any(len(value) >= 4 and value in message for value in credentials.values()):
            message = f"the {kind.name} connector refused its settings or credentials"
        raise AccountError(message) from None
    await built.aclose()


async def add_account(db: Database, master: MasterKey, *, merchant_id: str, kind: str, name: str,
                      settings: Mapping[str, Any], credentials: Mapping[str, Any]) -> ProcessorAccount:
    """A new account, checked by building its connector; its credentials sealed, never returned."""
    try:
        connector: ConnectorKind = connector_kind(kind)
        complete = connector.complete_settings(_strings("setting", settings))
        secrets = _strings("credential", credentials)
        connector.check_credentials(secrets)
    except ValueError as exc:
        raise AccountError(str(exc)) from None
    await _check_builds(connector, complete, secrets)
    name = name.strip()
    if not name or len(name) > _MAX_NAME or not name.isprintable():
        raise AccountError(f"the name must be 1 to {_MAX_NAME} printable characters")
    if contains_card_number(name):  # shown on the console's merchant page (SPEC §12: never a card number)
        raise AccountError("the name must not hold a card number")
    await _merchant_exists(db, merchant_id)
    account_id = new_id("pa")  # 128 random bits, as every identifier (SPEC §2); 29 characters
    sealed = master.seal(CREDENTIALS_PURPOSE, jsoncodec.dumps(secrets), account_id.encode())
    now = now_us()
    async with db.write() as conn:
        await insert_account(conn, account_id=account_id, merchant_id=merchant_id, kind=connector.name,
                             name=name, settings=jsoncodec.dumps(complete).decode(), credentials_sealed=sealed,
                             now=now)
    return ProcessorAccount(account_id, merchant_id, connector.name, name, complete, now, None)


async def list_processor_accounts(db: Database, merchant_id: str, *,
                                  with_removed: bool = False) -> list[ProcessorAccount]:
    """The merchant's active accounts (``with_removed``: and the removed ones), oldest first."""
    await _merchant_exists(db, merchant_id)
    async with db.read() as conn:
        return [ProcessorAccount.of(row) for row in await list_accounts(conn, merchant_id, with_removed=with_removed)]


async def remove_account(db: Database, *, merchant_id: str, account_id: str) -> None:
    """No more payments go to it; its attempts are still reconciled, captured and refunded
    there. Refused while the routing rules name it."""
    await _merchant_exists(db, merchant_id)
    async with db.write() as conn:
        # Marked first, rules read second: the mark locks the row that set_routing holds
        # while it stores rules naming the account, so on PostgreSQL either this sees those
        # rules (and is rolled back) or set_routing sees the account removed. Never both.
        if not await mark_removed(conn, merchant_id, account_id, now_us()):
            raise AccountError(f"merchant {merchant_id} has no processor account {account_id}")
        stored = await get_rules(conn, merchant_id)
        if stored is not None and any(account_id in rule.use for rule in parse_rules(jsoncodec.loads(stored))):
            raise AccountError(f"the routing rules use {account_id}: set rules without it first")


async def set_routing(db: Database, *, merchant_id: str, document: Any) -> list[dict[str, Any]]:
    """Validate the rules (every account named is one of this merchant's active accounts)
    and store them; returns them as stored."""
    try:
        rules = parse_rules(document)
    except RulesInvalid as exc:
        raise AccountError(str(exc)) from None
    await _merchant_exists(db, merchant_id)
    async with db.write() as conn:
        held: set[str] = set()
        for index, rule in enumerate(rules):
            for account_id in rule.use:
                # Held (locked) to the commit, so a removal cannot slip in between (remove_account).
                if account_id not in held and not await hold_active(conn, merchant_id, account_id):
                    raise AccountError(f"rule {index + 1}: {account_id} is not an active processor account "
                                       f"of merchant {merchant_id}")
                held.add(account_id)
        rendered = render_rules(rules)
        await set_rules(conn, merchant_id, jsoncodec.dumps(rendered).decode(), now_us())
    return rendered


async def show_routing(db: Database, merchant_id: str) -> list[dict[str, Any]] | None:
    await _merchant_exists(db, merchant_id)
    async with db.read() as conn:
        stored = await get_rules(conn, merchant_id)
    return None if stored is None else list(jsoncodec.loads(stored))


async def clear_routing(db: Database, merchant_id: str) -> bool:
    """Drop the merchant's rules: payments go to its active accounts in the order they were
    added again (or, with none, to the default processor). The only way back from rules to
    no account at all: the rules must name an active account, and an account they name
    cannot be removed. False: there were no rules."""
    await _merchant_exists(db, merchant_id)
    async with db.write() as conn:
        return await delete_rules(conn, merchant_id)
