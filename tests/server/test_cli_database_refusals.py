"""A database that refuses in the middle of a command — locked past the busy timeout,
read-only, a statement timeout, its server ending the session — is one line on stderr and
exit status 2, naming the driver's own reason and never SQLAlchemy's ``[SQL: …]`` or
``[parameters: …]`` (which can hold sealed secrets or ids). Real failures, run through the
real command line in a subprocess; once each of these was a traceback holding the statement."""
from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.server.test_cli_errors import assert_one_line
from tests.support.app import TEST_MASTER_KEY
from tests.support.databases import another_database, pg_base_url
from tests.support.eventually import eventually

# What the driver's first line must be, without what SQLAlchemy adds to it.
NEVER = ("Traceback", "[SQL:", "[parameters:", "INSERT", "UPDATE", "SELECT", "sqlalche.me")

# The commands that write (each refused at its first write), with what they are given.
WRITERS = [
    ["merchants", "create", "--name", "Shop"],
    ["keys", "rotate-card-key"],
    ["vault", "rotate-data-key"],
]


def run(args: list[str], env: dict[str, str], *, program: str = "", prefix: tuple[str, ...] = (),
        ) -> subprocess.CompletedProcess[str]:
    """``paygate ARGS`` in a subprocess; ``program``: Python run before the command line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    code = f"import sys\n{program}\nfrom paygate_server.command import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([*prefix, sys.executable, "-c", code, *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def assert_refused(r: subprocess.CompletedProcess[str], reason: str) -> str:
    line = assert_one_line(r, "the database refused", reason)
    for text in NEVER:
        assert text not in r.stderr, (text, r.stderr)
    return line


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    with another_database("sqlite://", tmp_path) as url:
        yield url


def env_for(url: str, tmp_path: Path) -> dict[str, str]:
    return {"PAYGATE_DATABASE_URL": url, "PAYGATE_DATA_DIR": str(tmp_path / "data"),
            "PAYGATE_MASTER_KEY": TEST_MASTER_KEY}


# ---- SQLite -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", WRITERS, ids=" ".join)
def test_sqlite_locked_past_the_busy_timeout(args: list[str], sqlite_url: str, tmp_path: Path) -> None:
    """Another process holds the write lock (BEGIN IMMEDIATE) for longer than the busy
    timeout. The command's own timeout is made 0.2 s (SQLITE_BUSY_TIMEOUT_MS, 30 s) only so
    that the test does not wait half a minute: the lock and SQLite's refusal are real."""
    holder = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        r = run(args, env_for(sqlite_url, tmp_path),
                program="import paygate_server.storage.engine as engine\nengine.SQLITE_BUSY_TIMEOUT_MS = 200")
    finally:
        holder.close()
    assert_refused(r, "database is locked")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv: the database file is made another user's, and the "
                           "command runs without the capabilities that would let root write it anyway")
def test_sqlite_database_file_read_only(sqlite_url: str, tmp_path: Path) -> None:
    """The database file belongs to another user and is read-only to this one (a restore
    as the wrong user, a read-only mount). As root the permission bits alone are not enough
    (root writes anyway, and tightens its own files to 0600): the command runs as root
    without CAP_DAC_OVERRIDE and CAP_FOWNER, so the file's mode is what decides."""
    path = Path(make_url(sqlite_url).database or "")
    env = env_for(sqlite_url, tmp_path)
    assert run(["merchants", "create", "--name", "First"], env).returncode == 0  # the key is the database's
    os.chown(path, 65534, -1)  # nobody's
    path.chmod(0o644)
    caps = "-dac_override,-dac_read_search,-fowner"
    r = run(["keys", "rotate-card-key"], env, prefix=("setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"))
    assert_refused(r, "attempt to write a readonly database")


# ---- PostgreSQL ---------------------------------------------------------------------------

@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    with another_database(pg_base_url(), tmp_path) as url:
        yield url


async def _connect(url: str) -> asyncpg.Connection:
    u = make_url(url)
    return await asyncpg.connect(user=u.username, password=u.password, host=u.host or "127.0.0.1",
                                 port=u.port or 5432, database=u.database)


async def paygate_async(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PAYGATE_")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "paygate_server", *args, env={**base, **env},
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode or 0, out.decode(), err.decode())


async def test_postgresql_statement_timeout(pg_url: str, tmp_path: Path) -> None:
    """The database's statement_timeout cancels the command's insert, which waits on a lock
    this test holds on the merchants table."""
    admin = await _connect(pg_url)
    try:
        await admin.execute(f"ALTER DATABASE \"{make_url(pg_url).database}\" SET statement_timeout = '1500ms'")
        async with admin.transaction():
            await admin.execute("LOCK TABLE merchants IN SHARE MODE")
            r = await paygate_async(["merchants", "create", "--name", "Shop"], env_for(pg_url, tmp_path))
    finally:
        await admin.close()
    assert_refused(r, "canceling statement due to statement timeout")


async def test_postgresql_backend_terminated_mid_command(pg_url: str, tmp_path: Path) -> None:
    """An administrator (or a failover) ends the command's session while its insert waits:
    pg_terminate_backend, from this test, once the backend is seen waiting on the lock."""
    admin, watcher = await _connect(pg_url), await _connect(pg_url)
    try:
        async with admin.transaction():
            await admin.execute("LOCK TABLE merchants IN SHARE MODE")
            command = asyncio.ensure_future(paygate_async(["merchants", "create", "--name", "Shop"],
                                                          env_for(pg_url, tmp_path)))
            try:
                # (from another connection: inside a transaction pg_stat_activity is a snapshot)
                waiting = await eventually(
                    lambda: watcher.fetchval("SELECT array_agg(pid) FROM pg_stat_activity WHERE datname = $1 "
                                           "AND wait_event_type = 'Lock'", make_url(pg_url).database),
                    what="the command's insert waiting on the lock")
                assert await watcher.fetchval("SELECT bool_and(pg_terminate_backend(p)) FROM unnest($1::int[]) p",
                                              waiting)
                r = await command
            finally:
                command.cancel()
    finally:
        await admin.close()
        await watcher.close()
    assert_refused(r, "terminating connection due to administrator command")


# ---- what is said ---------------------------------------------------------------------------

def test_the_drivers_first_line_and_never_the_statement_or_its_parameters() -> None:
    from sqlalchemy.exc import OperationalError

    from paygate_server.storage.opening import database_refusal

    driver = sqlite3.OperationalError("disk I/O error\nsecond line")
    wrapped = OperationalError("INSERT INTO merchants (secret) VALUES (?)", ("sk_test_sealed",), driver)
    assert "[SQL:" in str(wrapped) and "sk_test_sealed" in str(wrapped)  # what must never be shown
    assert database_refusal(wrapped) == "disk I/O error"
    assert database_refusal(driver) == "disk I/O error"
    assert database_refusal(RuntimeError("a bug")) is None  # (a bug keeps its traceback)


async def test_postgresql_permission_denied(pg_url: str, tmp_path: Path) -> None:
    """The command connects as a role that may read the gateway's tables but not write them
    (a read-only user configured by mistake): PostgreSQL's "permission denied for table …"."""
    role = f"paygate_ro_{uuid.uuid4().hex[:12]}"
    admin = await _connect(pg_url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN; GRANT USAGE ON SCHEMA public TO "{role}"; '
                            f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        try:
            r = await paygate_async(["merchants", "create", "--name", "Shop"],
                                    env_for(make_url(pg_url).set(username=role, password=None)
                                            .render_as_string(hide_password=False), tmp_path))
        finally:
            await admin.execute(f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')
    finally:
        await admin.close()
    assert_refused(r, "permission denied for table")
