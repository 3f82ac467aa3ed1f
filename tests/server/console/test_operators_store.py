"""storage/operators.py: every statement, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import select

from paygate_server.ids import new_id
from paygate_server.storage import Database
from paygate_server.storage import operators as store
from paygate_server.storage.schema_console import operator_sessions
from tests.server.console.conftest import new_email

T0 = 1_800_000_000_000_000


async def _operator(db: Database, role: str = "viewer") -> store.OperatorRow:
    op_id, email = new_id("op"), new_email()
    async with db.write() as conn:
        await store.insert_operator(conn, operator_id=op_id, email=email, role=role, password_hash="$argon2id$x",
                                    now=T0)
    async with db.read() as conn:
        row = await store.find_operator_by_email(conn, email)
    assert row is not None and row.id == op_id
    return row


async def test_operator_insert_find_list_and_unique_email(db: Database) -> None:
    row = await _operator(db, "support")
    async with db.read() as conn:
        assert await store.find_operator_by_email(conn, row.email) == row
        assert await store.find_operator_by_email(conn, "nobody@example.com") is None
        assert row in await store.list_operators(conn)
    assert (row.role, row.created_at, row.disabled_at) == ("support", T0, None)
    assert "argon2" not in repr(row)
    async with db.write() as conn:
        assert not await store.insert_operator(conn, operator_id=new_id("op"), email=row.email, role="admin",
                                               password_hash="h", now=T0)


async def test_password_hash_is_replaced(db: Database) -> None:
    row = await _operator(db)
    async with db.write() as conn:
        await store.set_password_hash(conn, row.id, "$argon2id$new")
    async with db.read() as conn:
        assert (await store.find_operator_by_email(conn, row.email)).password_hash == "$argon2id$new"  # type: ignore[union-attr]


async def test_sessions_create_find_touch_revoke(db: Database) -> None:
    row = await _operator(db, "admin")
    async with db.write() as conn:
        await store.insert_session(conn, id_hash="a" * 64, operator_id=row.id, now=T0, remote_addr="192.0.2.1",
                                   user_agent="test", created_before=0, seen_before=0)
    async with db.read() as conn:
        found = await store.find_session(conn, "a" * 64)
        assert await store.find_session(conn, "b" * 64) is None
    assert found == store.SessionRow("a" * 64, row.id, row.email, "admin", T0, T0, None, None)
    async with db.write() as conn:
        await store.touch_session(conn, "a" * 64, T0 + 5)
        assert await store.revoke_session(conn, "a" * 64, T0 + 6)
        assert not await store.revoke_session(conn, "a" * 64, T0 + 7)  # once
        await store.touch_session(conn, "a" * 64, T0 + 8)  # a revoked session is not touched
    async with db.read() as conn:
        found = await store.find_session(conn, "a" * 64)
        assert found is not None and (found.last_seen_at, found.revoked_at) == (T0 + 5, T0 + 6)
        assert await store.last_login_at(conn, row.id) == T0


async def test_disable_revokes_every_live_session_in_one_transaction(db: Database) -> None:
    row, other = await _operator(db), await _operator(db)
    async with db.write() as conn:
        for n, owner in enumerate((row, row, other)):
            await store.insert_session(conn, id_hash=f"{n}" * 64, operator_id=owner.id, now=T0, remote_addr=None,
                                       user_agent=None, created_before=0, seen_before=0)
        assert await store.disable_operator(conn, row.id, T0 + 10)
        assert not await store.disable_operator(conn, row.id, T0 + 11)
    async with db.read() as conn:
        assert (await store.find_operator_by_email(conn, row.email)).disabled_at == T0 + 10  # type: ignore[union-attr]
        assert [(await store.find_session(conn, f"{n}" * 64)).revoked_at for n in range(3)] == [  # type: ignore[union-attr]
            T0 + 10, T0 + 10, None]
        assert (await store.find_session(conn, "0" * 64)).operator_disabled_at == T0 + 10  # type: ignore[union-attr]
    with pytest.raises(RuntimeError):  # a failure inside the transaction leaves both undone
        async with db.write() as conn:
            await store.disable_operator(conn, other.id, T0 + 12)
            raise RuntimeError("boom")
    async with db.read() as conn:
        assert (await store.find_operator_by_email(conn, other.email)).disabled_at is None  # type: ignore[union-attr]
        assert (await store.find_session(conn, "2" * 64)).revoked_at is None  # type: ignore[union-attr]


async def test_failures_recorded_and_counted_newest_first_after_a_time(db: Database) -> None:
    row, other = await _operator(db), await _operator(db)
    async with db.write() as conn:
        for n in range(12):
            await store.record_failure(conn, row.id, T0 + n, "192.0.2.1", forget_before=0)
        await store.record_failure(conn, other.id, T0 + 100, None, forget_before=0)
    async with db.read() as conn:
        assert await store.recent_failures(conn, row.id, after=0, limit=10) == [T0 + n for n in range(11, 1, -1)]
        assert await store.recent_failures(conn, row.id, after=T0 + 9, limit=10) == [T0 + 11, T0 + 10]
        assert await store.recent_failures(conn, other.id, after=0, limit=10) == [T0 + 100]
        assert await store.last_login_at(conn, row.id) is None


async def _session_hashes(db: Database, operator_id: str) -> set[str]:
    async with db.read() as conn:
        return {r.id_hash for r in (await conn.execute(
            select(operator_sessions.c.id_hash).where(operator_sessions.c.operator_id == operator_id))).all()}


async def test_a_new_session_deletes_its_operators_sessions_that_are_over(db: Database) -> None:
    row, other = await _operator(db), await _operator(db)
    h = {tag: tag + secrets.token_hex(31) + "0" for tag in "rialon"}  # 64 characters, unique to this test

    async def start(id_hash: str, operator_id: str, now: int, *, forget: bool = False) -> None:
        async with db.write() as conn:  # deadlines: created over 100 µs ago, or idle over 10 µs
            await store.insert_session(conn, id_hash=id_hash, operator_id=operator_id, now=now, remote_addr=None,
                                       user_agent=None, created_before=now - 100 if forget else 0,
                                       seen_before=now - 10 if forget else 0)

    await start(h["r"], row.id, T0)  # revoked below
    await start(h["i"], row.id, T0 + 50)  # idle: never seen after T0 + 50
    await start(h["a"], row.id, T0)  # touched until T0 + 95, so past its absolute deadline at T0 + 101
    await start(h["l"], row.id, T0 + 50)  # live: touched at T0 + 95
    await start(h["o"], other.id, T0)  # another operator's: not this login's to delete
    async with db.write() as conn:
        assert await store.revoke_session(conn, h["r"], T0 + 1)
        await store.touch_session(conn, h["a"], T0 + 95)
        await store.touch_session(conn, h["l"], T0 + 95)
    assert len(await _session_hashes(db, row.id)) == 4
    await start(h["n"], row.id, T0 + 101, forget=True)
    assert await _session_hashes(db, row.id) == {h["l"], h["n"]}
    assert await _session_hashes(db, other.id) == {h["o"]}
    async with db.read() as conn:
        assert await store.last_login_at(conn, row.id) == T0 + 101


async def test_a_failure_deletes_its_operators_failures_before_the_given_time(db: Database) -> None:
    row, other = await _operator(db), await _operator(db)
    async with db.write() as conn:
        await store.record_failure(conn, other.id, T0, None, forget_before=0)
        for n in range(5):
            await store.record_failure(conn, row.id, T0 + n * 10, None, forget_before=T0 + n * 10 - 15)
    async with db.read() as conn:
        assert await store.recent_failures(conn, row.id, after=0, limit=10) == [T0 + 40, T0 + 30]
        assert await store.recent_failures(conn, other.id, after=0, limit=10) == [T0]


async def test_actions_newest_first_keyset_pages_and_target_filter(db: Database) -> None:
    row = await _operator(db, "admin")
    target = new_id("pi")
    async with db.write() as conn:
        for n in range(5):
            await store.insert_action(conn, operator_id=row.id, action=f"a{n}", target=target if n % 2 else None,
                                      detail=json.dumps({"n": n}), remote_addr="192.0.2.9", now=T0 + n)
    async with db.read() as conn:
        first = await store.list_actions(conn, limit=2)
        mine = [a for a in await store.list_actions(conn, limit=1000) if a.operator_id == row.id]
        second = await store.list_actions(conn, limit=2, before_id=first[-1].id)
        of_target = await store.list_actions(conn, limit=10, target=target)
        of_target_page2 = await store.list_actions(conn, limit=10, target=target, before_id=of_target[0].id)
    assert [a.action for a in mine] == ["a4", "a3", "a2", "a1", "a0"]
    assert [a.action for a in first] == ["a4", "a3"] and [a.action for a in second] == ["a2", "a1"]
    assert [a.action for a in of_target] == ["a3", "a1"] and [a.action for a in of_target_page2] == ["a1"]
    a4 = mine[0]
    assert (a4.operator_email, a4.target, json.loads(a4.detail or ""), a4.remote_addr, a4.at) == (
        row.email, None, {"n": 4}, "192.0.2.9", T0 + 4)
