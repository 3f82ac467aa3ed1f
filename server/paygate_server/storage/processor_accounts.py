"""Processor accounts' and routing rules' rows (SPEC §7): insert, list, remove, read.

Each function runs on the caller's connection (``Database.write`` / ``Database.read``).
The statements are the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from paygate_server.storage.statements import Connection, Sql, execute, fetch_all, fetch_one

__all__ = ["AccountRow", "delete_rules", "get_account", "get_rules", "hold_active", "insert_account", "list_accounts",
           "mark_removed", "set_rules"]


@dataclass(frozen=True, slots=True, repr=False)
class AccountRow:
    id: str
    merchant_id: str
    kind: str
    name: str
    settings: str  # JSON
    credentials_sealed: bytes
    created_at: int
    removed_at: int | None

    def __repr__(self) -> str:  # never the sealed credentials
        return f"AccountRow({self.id!r}, merchant_id={self.merchant_id!r}, kind={self.kind!r}, name={self.name!r})"


_COLUMNS = "id, merchant_id, kind, name, settings, credentials_sealed, created_at, removed_at"
_INSERT = Sql(f"INSERT INTO processor_accounts ({_COLUMNS})"
              " VALUES (:id, :merchant_id, :kind, :name, :settings, :credentials_sealed, :now, NULL)")
_GET = Sql(f"SELECT {_COLUMNS} FROM processor_accounts WHERE id = :id")
_LIST = Sql(f"SELECT {_COLUMNS} FROM processor_accounts WHERE merchant_id = :merchant_id"
            " AND (removed_at IS NULL OR :with_removed = 1) ORDER BY created_at, id")
_REMOVE = Sql("UPDATE processor_accounts SET removed_at = :now"
              " WHERE id = :id AND merchant_id = :merchant_id AND removed_at IS NULL")
# A write that changes nothing, for its row lock (PostgreSQL; SQLite has one writer anyway).
_HOLD = Sql("UPDATE processor_accounts SET removed_at = removed_at"
            " WHERE id = :id AND merchant_id = :merchant_id AND removed_at IS NULL")
_GET_RULES = Sql("SELECT rules FROM routing_rules WHERE merchant_id = :merchant_id")
_UPDATE_RULES = Sql("UPDATE routing_rules SET rules = :rules, updated_at = :now WHERE merchant_id = :merchant_id")
_DELETE_RULES = Sql("DELETE FROM routing_rules WHERE merchant_id = :merchant_id")
_INSERT_RULES = Sql("INSERT INTO routing_rules (merchant_id, rules, updated_at) VALUES (:merchant_id, :rules, :now)")


def _row(m: Mapping[str, Any]) -> AccountRow:
    return AccountRow(m["id"], m["merchant_id"], m["kind"], m["name"], m["settings"], bytes(m["credentials_sealed"]),
                      m["created_at"], m["removed_at"])


async def insert_account(conn: Connection, *, account_id: str, merchant_id: str, kind: str, name: str,
                         settings: str, credentials_sealed: bytes, now: int) -> None:
    await execute(conn, _INSERT, id=account_id, merchant_id=merchant_id, kind=kind, name=name, settings=settings,
                  credentials_sealed=credentials_sealed, now=now)


async def get_account(conn: Connection, account_id: str) -> AccountRow | None:
    """The account, removed or not (its attempts are still settled and refunded there)."""
    row = await fetch_one(conn, _GET, id=account_id)
    return None if row is None else _row(row)


async def list_accounts(conn: Connection, merchant_id: str, *, with_removed: bool = False) -> list[AccountRow]:
    """The merchant's accounts, oldest first."""
    return [_row(r) for r in await fetch_all(conn, _LIST, merchant_id=merchant_id, with_removed=int(with_removed))]


async def mark_removed(conn: Connection, merchant_id: str, account_id: str, now: int) -> bool:
    """False: no such active account of this merchant."""
    return await execute(conn, _REMOVE, id=account_id, merchant_id=merchant_id, now=now) == 1


async def hold_active(conn: Connection, merchant_id: str, account_id: str) -> bool:
    """Lock the merchant's active account until the transaction ends; False: there is no
    such active account (now: a removal committed meanwhile is seen, not raced)."""
    return await execute(conn, _HOLD, id=account_id, merchant_id=merchant_id) == 1


async def get_rules(conn: Connection, merchant_id: str) -> str | None:
    """The merchant's routing rules (JSON), None if never set."""
    row = await fetch_one(conn, _GET_RULES, merchant_id=merchant_id)
    return None if row is None else str(row["rules"])


async def set_rules(conn: Connection, merchant_id: str, rules: str, now: int) -> None:
    if not await execute(conn, _UPDATE_RULES, merchant_id=merchant_id, rules=rules, now=now):
        await execute(conn, _INSERT_RULES, merchant_id=merchant_id, rules=rules, now=now)


async def delete_rules(conn: Connection, merchant_id: str) -> bool:
    """False: the merchant had no rules."""
    return await execute(conn, _DELETE_RULES, merchant_id=merchant_id) == 1
