"""The gateway's SQLite connections (storage/loop_sqlite.py, ``LoopConnection``): what
cannot wait runs on the event loop's thread, what can (a lock, an fsync) on a worker thread,
and a connection's calls keep their order either way."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from paygate_server.storage import create_database
from paygate_server.storage.loop_sqlite import LoopConnection, loop_creator
from paygate_server.storage.migrate import upgrade
from paygate_server.storage.statements import Sql, execute, fetch_value

_INSERT = Sql("INSERT INTO merchants (id, name, created_at) VALUES (:id, paygate_where(), 1)")


@pytest.fixture
async def database_file(tmp_path: Path) -> Path:
    path = tmp_path / "loop.db"
    db = create_database(f"sqlite:///{path}")
    try:
        await upgrade(db)
    finally:
        await db.dispose()
    return path


@pytest.fixture
async def connection(database_file: Path) -> AsyncIterator[LoopConnection]:
    conn = await loop_creator(str(database_file))()
    conn.isolation_level = None  # as the gateway's (storage/engine.py): no implicit BEGIN
    try:
        yield conn
    finally:
        await conn.close()


def _held_write_lock(path: Path) -> sqlite3.Connection:
    """Another process's writer, in effect: a plain connection holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_reads_and_a_write_units_statements_run_on_the_loop_the_rest_on_a_thread(database_file: Path) -> None:
    loop_thread = threading.get_ident()
    db = create_database(f"sqlite:///{database_file}")

    def where() -> str:
        return "loop" if threading.get_ident() == loop_thread else "worker"

    try:
        async with db.write() as conn:  # a unit: inside the batch's BEGIN IMMEDIATE
            raw = await conn.get_raw_connection()
            await raw.driver_connection.create_function("paygate_where", 0, where)  # type: ignore[union-attr]
            await execute(conn, _INSERT, id="mer_in_unit")
            assert await fetch_value(conn, Sql("SELECT paygate_where()")) == "loop"
        async with db.read() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.create_function("paygate_where", 0, where)  # type: ignore[union-attr]
            assert await fetch_value(conn, Sql("SELECT paygate_where()")) == "loop"
            # A read through SQLAlchemy's cursor (a background job's count, say): a thread's.
            assert (await conn.execute(text("SELECT paygate_where()"))).scalar_one() == "worker"
            # A write outside a transaction that holds the lock may wait for it: a thread's.
            await execute(conn, _INSERT, id="mer_alone")
            names = await fetch_value(conn, Sql("SELECT group_concat(id || '=' || name, ',') FROM "
                                               "(SELECT id, name FROM merchants WHERE id LIKE 'mer_%' ORDER BY id)"))
        assert names == "mer_alone=worker,mer_in_unit=loop"
    finally:
        await db.dispose()


async def test_a_begin_waiting_for_another_writer_leaves_the_loop_serving(database_file: Path,
                                                                         connection: LoopConnection) -> None:
    other = _held_write_lock(database_file)
    reader = await loop_creator(str(database_file))()
    try:
        begin = asyncio.ensure_future(connection.execute("BEGIN IMMEDIATE"))
        await asyncio.sleep(0)  # the task runs to its first suspension: the BEGIN, waiting
        # On the loop's thread the BEGIN would hold the loop until the lock is free (the busy
        # timeout, 30 s); here another connection reads meanwhile.
        assert await reader.execute_fetchall("SELECT count(*) FROM merchants") == [(0,)]
        assert not begin.done()
        other.execute("INSERT INTO merchants (id, name, created_at) VALUES ('mer_other', 'other', 1)")
        other.execute("COMMIT")
        await begin
        assert connection.in_transaction
        await connection.execute("INSERT INTO merchants (id, name, created_at) VALUES ('mer_mine', 'mine', 1)")
        await connection.commit()
        assert await reader.execute_fetchall("SELECT id FROM merchants ORDER BY id") == [("mer_mine",), ("mer_other",)]
    finally:
        other.close()
        await reader.close()


async def test_a_call_made_while_one_is_on_a_thread_waits_for_it_even_if_that_caller_was_cancelled(
        database_file: Path, connection: LoopConnection) -> None:
    other = _held_write_lock(database_file)
    try:
        begin = asyncio.ensure_future(connection.execute("BEGIN IMMEDIATE"))
        await asyncio.sleep(0)
        begin.cancel()
        with pytest.raises(asyncio.CancelledError):
            await begin
        # The BEGIN still runs to its end on its thread; what is sent next goes after it,
        # inside the transaction it opened (the write lock held: on the loop's thread).
        insert = asyncio.ensure_future(connection.execute(
            "INSERT INTO merchants (id, name, created_at) VALUES ('mer_after', 'after', 1)"))
        await asyncio.sleep(0)
        assert not insert.done()
        other.execute("COMMIT")
        await insert
        assert connection.in_transaction
        await connection.rollback()
        assert await connection.execute_fetchall("SELECT count(*) FROM merchants") == [(0,)]
    finally:
        other.close()


async def test_the_urls_connect_arguments_reach_sqlite(tmp_path: Path) -> None:
    """What the URL asks of ``sqlite3.connect`` is what the gateway's connections are opened
    with: here ``uri=true``, without which ``file:/…`` would name no file that can be opened."""
    db = create_database(f"sqlite:///file:{tmp_path}/by-uri.db?uri=true")
    try:
        async with db.write() as conn:
            await execute(conn, Sql("CREATE TABLE t (x INTEGER)"))
            await execute(conn, Sql("INSERT INTO t VALUES (7)"))
        async with db.read() as conn:
            assert await fetch_value(conn, Sql("SELECT x FROM t")) == 7
    finally:
        await db.dispose()
    assert (tmp_path / "by-uri.db").exists()


async def test_begins_waiting_on_many_connections_do_not_hold_up_the_commit_that_frees_them(
        database_file: Path) -> None:
    """More connections wait for the write lock than a shared thread pool has threads (the
    loop's default has at most ``cpu_count() + 4``): the holder's COMMIT still runs, on its
    own connection's thread, and each waiter gets the lock in turn. With one pool for all,
    the COMMIT would queue behind the waiting BEGINs until their busy timeout failed them."""
    connect = loop_creator(str(database_file), timeout=5.0)
    holder = await connect()
    waiters = [await connect() for _ in range((os.cpu_count() or 1) + 6)]
    try:
        for conn in (holder, *waiters):
            conn.isolation_level = None
        await holder.execute("BEGIN IMMEDIATE")
        await holder.execute("INSERT INTO merchants (id, name, created_at) VALUES ('mer_holder', 'h', 1)")
        begins = {asyncio.ensure_future(conn.execute("BEGIN IMMEDIATE")): conn for conn in waiters}
        await asyncio.sleep(0)  # every BEGIN on its thread, waiting
        assert not any(begin.done() for begin in begins)
        await holder.commit()
        pending = set(begins)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for begin in done:
                await begin  # no "database is locked"
                await begins[begin].commit()
        assert await holder.execute_fetchall("SELECT id FROM merchants") == [("mer_holder",)]
    finally:
        for conn in (holder, *waiters):
            await conn.close()


async def test_a_statement_is_known_by_its_first_word_whatever_comment_leads(connection: LoopConnection) -> None:
    loop_thread = threading.get_ident()
    await connection.create_function("paygate_where", 0,
                                     lambda: "loop" if threading.get_ident() == loop_thread else "worker")
    insert = "INSERT INTO merchants (id, name, created_at) VALUES (:id, paygate_where(), 1)"
    await connection.execute("/* the batch */ BEGIN IMMEDIATE")
    await connection.execute(insert, {"id": "mer_locked"})
    await connection.execute("-- done\n  COMMIT")
    await connection.execute(insert, {"id": "mer_alone"})
    assert await connection.execute_fetchall("SELECT id, name FROM merchants ORDER BY id") == [
        ("mer_alone", "worker"), ("mer_locked", "loop")]


async def test_a_trace_callback_sees_every_statement_until_it_is_removed(connection: LoopConnection) -> None:
    """As aiosqlite's ``set_trace_callback``, which docs/perf/count.py counts statements with."""
    traced: list[str] = []
    await connection.set_trace_callback(traced.append)
    await connection.execute("BEGIN IMMEDIATE")
    await connection.execute("INSERT INTO merchants (id, name, created_at) VALUES ('mer_t', 'traced', 1)")
    await connection.execute("COMMIT")
    await connection.set_trace_callback(None)
    await connection.execute_fetchall("SELECT id FROM merchants")
    assert traced == ["BEGIN IMMEDIATE", "INSERT INTO merchants (id, name, created_at) VALUES ('mer_t', 'traced', 1)",
                      "COMMIT"]
