"""The operator console's rows (``schema_console``): operators, their sessions, failed
logins and the record of operators' actions.

Each function runs on the caller's connection (``Database.write`` / ``Database.read``),
so what must commit together does (disabling an account and revoking its sessions). The
statements are the same on SQLite and PostgreSQL.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from paygate_server.storage.statements import Connection, Sql, execute, fetch_all, fetch_one

__all__ = ["ActionRow", "OperatorRow", "SessionRow", "disable_operator", "find_operator_by_email",
           "insert_action", "insert_operator", "insert_session", "last_login_at", "list_actions", "list_operators",
           "recent_failures", "record_failure", "revoke_session", "find_session", "set_password_hash",
           "touch_session"]


@dataclass(frozen=True, slots=True, repr=False)
class OperatorRow:
    id: str
    email: str
    role: str
    password_hash: str
    created_at: int
    disabled_at: int | None

    def __repr__(self) -> str:  # never the hash
        return f"OperatorRow({self.id!r}, email={self.email!r}, role={self.role!r}, disabled_at={self.disabled_at!r})"


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A session joined with its operator (what a request needs to know who it is)."""
    id_hash: str
    operator_id: str
    email: str
    role: str
    created_at: int
    last_seen_at: int
    revoked_at: int | None
    operator_disabled_at: int | None


@dataclass(frozen=True, slots=True)
class ActionRow:
    id: int
    operator_id: str
    operator_email: str
    action: str
    target: str | None
    detail: str | None  # JSON object
    remote_addr: str | None
    at: int


_OPERATOR_COLUMNS = "id, email, role, password_hash, created_at, disabled_at"
_INSERT_OPERATOR = Sql(f"INSERT INTO operators ({_OPERATOR_COLUMNS})"
                       " VALUES (:id, :email, :role, :password_hash, :now, NULL)")
_FIND_OPERATOR = Sql(f"SELECT {_OPERATOR_COLUMNS} FROM operators WHERE email = :email")
_LIST_OPERATORS = Sql(f"SELECT {_OPERATOR_COLUMNS} FROM operators ORDER BY email")
_SET_HASH = Sql("UPDATE operators SET password_hash = :password_hash WHERE id = :id")
_DISABLE = Sql("UPDATE operators SET disabled_at = :now WHERE id = :id AND disabled_at IS NULL")
_REVOKE_ALL = Sql("UPDATE operator_sessions SET revoked_at = :now WHERE operator_id = :id AND revoked_at IS NULL")

_INSERT_SESSION = Sql("INSERT INTO operator_sessions (id_hash, operator_id, created_at, last_seen_at, revoked_at,"
                      " remote_addr, user_agent) VALUES (:id_hash, :operator_id, :now, :now, NULL, :remote_addr,"
                      " :user_agent)")
_FIND_SESSION = Sql("SELECT s.id_hash, s.operator_id, o.email, o.role, s.created_at, s.last_seen_at, s.revoked_at,"
                    " o.disabled_at FROM operator_sessions s JOIN operators o ON o.id = s.operator_id"
                    " WHERE s.id_hash = :id_hash")
_TOUCH_SESSION = Sql("UPDATE operator_sessions SET last_seen_at = :now WHERE id_hash = :id_hash"
                     " AND revoked_at IS NULL")
_REVOKE_SESSION = Sql("UPDATE operator_sessions SET revoked_at = :now WHERE id_hash = :id_hash"
                      " AND revoked_at IS NULL")
# A new session's operator's sessions that are over (revoked, past the idle or absolute
# deadline): nothing can resume them, and nothing else reads them but ``_LAST_LOGIN``, which
# the new one answers. Run with each login, so an operator keeps only their live sessions.
_FORGET_SESSIONS = Sql("DELETE FROM operator_sessions WHERE operator_id = :operator_id AND id_hash <> :id_hash"
                       " AND (revoked_at IS NOT NULL OR created_at < :created_before"
                       " OR last_seen_at < :seen_before)")
_LAST_LOGIN = Sql("SELECT MAX(created_at) AS at FROM operator_sessions WHERE operator_id = :operator_id")

_INSERT_FAILURE = Sql("INSERT INTO operator_login_failures (operator_id, at, remote_addr)"
                      " VALUES (:operator_id, :now, :remote_addr)")
# Failures older than the lockout's window can be in no lock (accounts.py ``locked_until``):
# forgotten with each new failure, so an account under attack keeps about a window's worth.
_FORGET_FAILURES = Sql("DELETE FROM operator_login_failures WHERE operator_id = :operator_id AND at < :before")
_RECENT_FAILURES = Sql("SELECT at FROM operator_login_failures WHERE operator_id = :operator_id AND at > :after"
                       " ORDER BY at DESC, id DESC LIMIT :limit")

_INSERT_ACTION = Sql("INSERT INTO operator_actions (operator_id, action, target, detail, remote_addr, at)"
                     " VALUES (:operator_id, :action, :target, :detail, :remote_addr, :now)")
_ACTION_COLUMNS = ("SELECT a.id, a.operator_id, o.email, a.action, a.target, a.detail, a.remote_addr, a.at"
                   " FROM operator_actions a JOIN operators o ON o.id = a.operator_id")
# Newest first by id (assigned in commit order on one writer, in insert order on PostgreSQL):
# the keyset is the last id shown, so a page never repeats or skips a row as new ones arrive.
_LIST_ACTIONS = Sql(f"{_ACTION_COLUMNS} WHERE a.id < :before ORDER BY a.id DESC LIMIT :limit")
_LIST_ACTIONS_OF = Sql(f"{_ACTION_COLUMNS} WHERE a.id < :before AND a.target = :target"
                       " ORDER BY a.id DESC LIMIT :limit")
_NO_KEYSET = 2**31 - 1  # the largest id (INTEGER): the first page


def _operator(m: Mapping[str, Any]) -> OperatorRow:
    return OperatorRow(m["id"], m["email"], m["role"], m["password_hash"], m["created_at"], m["disabled_at"])


async def insert_operator(conn: Connection, *, operator_id: str, email: str, role: str, password_hash: str,
                          now: int) -> bool:
    """A new account, the email already lower-cased; False: the email is taken (nothing
    written; on PostgreSQL the transaction is then aborted: the caller ends it)."""
    try:
        await execute(conn, _INSERT_OPERATOR, id=operator_id, email=email, role=role, password_hash=password_hash,
                      now=now)
    except IntegrityError:
        return False
    return True


async def find_operator_by_email(conn: Connection, email: str) -> OperatorRow | None:
    """The account of this (lower-cased) email, disabled or not."""
    row = await fetch_one(conn, _FIND_OPERATOR, email=email)
    return None if row is None else _operator(row)


async def list_operators(conn: Connection) -> list[OperatorRow]:
    """Every account, disabled ones included, by email."""
    return [_operator(r) for r in await fetch_all(conn, _LIST_OPERATORS)]


async def set_password_hash(conn: Connection, operator_id: str, password_hash: str) -> None:
    await execute(conn, _SET_HASH, id=operator_id, password_hash=password_hash)


async def disable_operator(conn: Connection, operator_id: str, now: int) -> bool:
    """Disable the account and revoke its live sessions (run both in one transaction);
    False: it was already disabled (its sessions were revoked then)."""
    disabled = await execute(conn, _DISABLE, id=operator_id, now=now) == 1
    await execute(conn, _REVOKE_ALL, id=operator_id, now=now)
    return disabled


async def insert_session(conn: Connection, *, id_hash: str, operator_id: str, now: int, remote_addr: str | None,
                         user_agent: str | None, created_before: int, seen_before: int) -> None:
    """A new session, and the operator's sessions that are over deleted: revoked, created
    before ``created_before`` or last seen before ``seen_before`` (the console's absolute
    and idle deadlines as of ``now``: exactly what ``Sessions.resume`` refuses, never a
    session it would still take)."""
    await execute(conn, _INSERT_SESSION, id_hash=id_hash, operator_id=operator_id, now=now,
                  remote_addr=remote_addr, user_agent=user_agent)
    await execute(conn, _FORGET_SESSIONS, operator_id=operator_id, id_hash=id_hash,
                  created_before=created_before, seen_before=seen_before)


async def find_session(conn: Connection, id_hash: str) -> SessionRow | None:
    """The session with its operator's email, role and disabled time, revoked or not."""
    m = await fetch_one(conn, _FIND_SESSION, id_hash=id_hash)
    if m is None:
        return None
    return SessionRow(m["id_hash"], m["operator_id"], m["email"], m["role"], m["created_at"], m["last_seen_at"],
                      m["revoked_at"], m["disabled_at"])


async def touch_session(conn: Connection, id_hash: str, now: int) -> None:
    await execute(conn, _TOUCH_SESSION, id_hash=id_hash, now=now)


async def revoke_session(conn: Connection, id_hash: str, now: int) -> bool:
    """False: no such live session."""
    return await execute(conn, _REVOKE_SESSION, id_hash=id_hash, now=now) == 1


async def last_login_at(conn: Connection, operator_id: str) -> int | None:
    """When the operator last logged in (their newest session), or None."""
    row = await fetch_one(conn, _LAST_LOGIN, operator_id=operator_id)
    return None if row is None or row["at"] is None else int(row["at"])


async def record_failure(conn: Connection, operator_id: str, now: int, remote_addr: str | None, *,
                         forget_before: int) -> None:
    """A failed login, and the operator's failures before ``forget_before`` deleted."""
    await execute(conn, _INSERT_FAILURE, operator_id=operator_id, now=now, remote_addr=remote_addr)
    await execute(conn, _FORGET_FAILURES, operator_id=operator_id, before=forget_before)


async def recent_failures(conn: Connection, operator_id: str, *, after: int, limit: int) -> list[int]:
    """The times of the operator's newest failed logins later than ``after``, newest first."""
    return [int(r["at"]) for r in await fetch_all(conn, _RECENT_FAILURES, operator_id=operator_id, after=after,
                                                  limit=limit)]


async def insert_action(conn: Connection, *, operator_id: str, action: str, target: str | None, detail: str | None,
                        remote_addr: str | None, now: int) -> None:
    await execute(conn, _INSERT_ACTION, operator_id=operator_id, action=action, target=target, detail=detail,
                  remote_addr=remote_addr, now=now)


async def list_actions(conn: Connection, *, limit: int, before_id: int | None = None,
                       target: str | None = None) -> list[ActionRow]:
    """Operators' actions newest first, older than ``before_id`` (the keyset: the last id of
    the previous page), only those on ``target`` if given."""
    before = _NO_KEYSET if before_id is None else min(before_id, _NO_KEYSET)
    if target is None:
        rows = await fetch_all(conn, _LIST_ACTIONS, before=before, limit=limit)
    else:
        rows = await fetch_all(conn, _LIST_ACTIONS_OF, before=before, target=target, limit=limit)
    return [ActionRow(int(m["id"]), m["operator_id"], m["email"], m["action"], m["target"], m["detail"],
                      m["remote_addr"], int(m["at"])) for m in rows]
