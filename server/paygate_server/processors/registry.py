"""Where a payment goes: the merchant's processor accounts and routing, or the default.

:class:`ProcessorRoutes` answers two questions for the payment core:

- :meth:`~ProcessorRoutes.route`: the ordered accounts for a new payment — the first
  matching routing rule's, or (no rules) every active account in the order they were
  added, or ``None`` for a merchant with no account (the gateway's default processor,
  ``PAYGATE_PROCESSOR_URL``, as before accounts existed);
- :meth:`~ProcessorRoutes.connector`: the connector for an operation's recorded route
  (``transactions.connector``): an account (``pa_…``, built once from its settings and
  sealed credentials, kept for the life of the process) or the caller's default connector
  (each service holds the default it was given) — when the route names it: an operation
  recorded at a default of another kind (``simulator`` while this process's default is
  ``stripe``) went to another processor, which is never asked in its place.

A merchant's routing is read at most once per ``PAYGATE_KEY_CACHE_TTL_S`` per process:
a merchant with no account costs a payment no extra statement in between.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paygate_server import jsoncodec
from paygate_server.crypto import MasterKey
from paygate_server.processing.connectors import Connector, connector_kind
from paygate_server.processors.accounts import open_credentials
from paygate_server.processors.routing import Payment, Rule, choose, parse_rules
from paygate_server.singleflight import ExpiringCache
from paygate_server.storage import Database
from paygate_server.storage.processor_accounts import get_account, get_rules, list_accounts

__all__ = ["ACCOUNT_PREFIX", "AccountMissing", "ProcessorRoutes", "Routing", "default_for", "is_account"]

ACCOUNT_PREFIX = "pa_"


def is_account(route: str) -> bool:
    """Whether a recorded route is a processor account (else: the default connector's name)."""
    return route.startswith(ACCOUNT_PREFIX)


class AccountMissing(LookupError):
    """An operation names a route this process cannot reach: an account this database does
    not have, or a default processor of another kind than this process's."""


def default_for(route: str, default: Connector) -> Connector:
    """``default`` for an operation recorded with ``route`` (not an account): only if the
    route is its name. The default is recorded by its connector's name, not its URL (an
    address change of the same processor must not strand payments), so a default of another
    name is another processor (``PAYGATE_PROCESSOR_URL`` changed, or set apart on one
    process): its "no such payment" would fail a charge the first one took, and a capture,
    void or refund sent there would go to a processor that never saw the payment. Raises
    :class:`AccountMissing` instead (docs/operations.md, "One default processor")."""
    if route != default.name:
        raise AccountMissing(route)
    return default


@dataclass(frozen=True, slots=True)
class Routing:
    accounts: tuple[str, ...]  # active, oldest first
    rules: tuple[Rule, ...] | None

    def choose(self, payment: Payment) -> tuple[str, ...]:
        return self.accounts if self.rules is None else choose(self.rules, payment)


class ProcessorRoutes:
    def __init__(self, db: Database, master: MasterKey, *, cache_ttl_s: float,
                 wrap: Callable[[Connector], Connector] = lambda c: c, **options: Any) -> None:
        self._db = db
        self._master = master
        self._wrap = wrap
        self._options = options  # connect_timeout, read_timeout, … for every account's connector
        self._routing: ExpiringCache[str, Routing | None] = ExpiringCache(cache_ttl_s, self._read_routing)
        self._connectors: dict[str, Connector] = {}
        self._building: dict[str, asyncio.Lock] = {}

    async def route(self, merchant_id: str) -> Routing | None:
        """The merchant's routing; None: no account, the default processor."""
        return await self._routing.get(merchant_id)

    async def _read_routing(self, merchant_id: str) -> Routing | None:
        # One statement, no transaction, for a merchant with no account (the usual case).
        async with self._db.read_one() as conn:
            accounts = tuple(row.id for row in await list_accounts(conn, merchant_id))
            stored = await get_rules(conn, merchant_id) if accounts else None
        return None if not accounts else Routing(
            accounts, None if stored is None else parse_rules(jsoncodec.loads(stored)))

    async def connector(self, route: str, default: Connector) -> Connector:
        """The connector an operation recorded with ``route`` goes to and is asked about
        (never another processor): its account's, else ``default``."""
        if not is_account(route):
            return default_for(route, default)
        found = self._connectors.get(route)
        if found is not None:
            return found
        async with self._building.setdefault(route, asyncio.Lock()):
            found = self._connectors.get(route)
            if found is None:
                async with self._db.read() as conn:
                    row = await get_account(conn, route)
                if row is None:
                    raise AccountMissing(route)
                kind = connector_kind(row.kind)
                settings = kind.complete_settings(jsoncodec.loads(row.settings))
                found = self._wrap(kind.build(settings, open_credentials(self._master, row), **self._options))
                self._connectors[route] = found
        return found

    async def siblings(self, account_id: str) -> list[str]:
        """The other accounts of ``account_id``'s merchant of the same kind, removed ones too
        (their payments are still settled), oldest first; none if it is no account."""
        async with self._db.read() as conn:
            row = await get_account(conn, account_id)
            if row is None:
                return []
            accounts = await list_accounts(conn, row.merchant_id, with_removed=True)
        return [a.id for a in accounts if a.kind == row.kind and a.id != account_id]

    async def aclose(self) -> None:
        """Close the accounts' connectors (the default is its owner's to close)."""
        connectors, self._connectors = list(self._connectors.values()), {}
        for connector in connectors:
            await connector.aclose()
