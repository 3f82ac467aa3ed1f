"""A PgBouncer of the test's own in transaction mode, in front of the test PostgreSQL.

Debian's ``pgbouncer`` (``.ci/run`` installs it), its configuration in a fresh directory,
listening on a free loopback port, trusting every client (the server behind it decides),
stopped and removed afterwards. PgBouncer refuses to run as root; when the tests do (CI),
it runs as the ``postgres`` user, as tests/support/private_postgres.py runs PostgreSQL.
Where none of that is possible the caller skips with :class:`Unavailable`'s reason.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from paygate_server.storage import create_database
from tests.support.databases import pg_base_url
from tests.support.eventually import eventually_sync
from tests.support.processes import gateway_env

__all__ = ["PgBouncer", "Unavailable", "lease_holders", "migrate_through", "paygate", "pgbouncer_installed",
           "pgbouncer_or_skip", "through"]

# The advisory lock class of the relay's leases (storage/relay_leases.py).
_LEASE_LOCK_CLASS = 7_342_001

_RUN_AS = "postgres"
_START_TIMEOUT_S = 10.0


class Unavailable(RuntimeError):
    """No PgBouncer can be run here (the message says why)."""


def _find_binary() -> str | None:
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)


def pgbouncer_installed() -> bool:
    return _find_binary() is not None


def _binary() -> str:
    found = _find_binary()
    if found is None:
        raise Unavailable("pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """``pool_mode = transaction`` in front of the server of ``server_url`` (any database on
    it: a client's database name is passed through)."""

    def __init__(self, server_url: str, *, pool_size: int = 10) -> None:
        self._binary = _binary()
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam(_RUN_AS)
            except KeyError:
                raise Unavailable(f"running as root and there is no {_RUN_AS!r} user to run PgBouncer as") from None
        self._server = make_url(server_url)
        self._user = self._server.username or pwd.getpwuid(os.geteuid()).pw_name
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="paygate-pgbouncer-"))
        self.log = self.dir / "pgbouncer.log"
        self.pool_size = pool_size
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """``server_url`` with the host and port of this PgBouncer, for ``database``."""
        return self._server.set(host="127.0.0.1", port=self.port, database=database).render_as_string(
            hide_password=False)

    def _config(self) -> str:
        return "\n".join([
            "[databases]",
            f"* = host={self._server.host or '127.0.0.1'} port={self._server.port or 5432}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.dir / 'users.txt'}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 500",
            f"logfile = {self.log}",
            f"admin_users = {self._user}",
            "",
        ])

    def start(self) -> None:
        # "trust" still wants the user in the auth file (its password is not asked for).
        (self.dir / "users.txt").write_text(f'"{self._user}" ""\n')
        config = self.dir / "pgbouncer.ini"
        config.write_text(self._config())
        if self._owner is not None:
            for path in (self.dir, config, self.dir / "users.txt"):
                os.chown(path, self._owner.pw_uid, self._owner.pw_gid)
        # As root: the child switches user itself before it runs pgbouncer, so the process
        # the test stops is pgbouncer's own (through runuser it would be left unreaped).
        as_user = {} if self._owner is None else {"user": self._owner.pw_uid, "group": self._owner.pw_gid,
                                                   "extra_groups": []}
        self.proc = subprocess.Popen([self._binary, str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, cwd=self.dir, **as_user)
        eventually_sync(self._listening, timeout=_START_TIMEOUT_S, what=f"pgbouncer to listen on {self.port}")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}): {self.log_text()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def server_pids(self) -> set[int]:
        """The PostgreSQL backends of PgBouncer's server connections (its admin console's
        ``SHOW SERVERS``, which speaks the simple query protocol only: psql asks)."""
        done = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self._user, "-d", "pgbouncer",
                               "-A", "-F", "\t", "-P", "footer=off", "-c", "SHOW SERVERS"],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"SHOW SERVERS: {done.stderr}")
        header, *rows = done.stdout.splitlines()
        column = header.split("\t").index("remote_pid")
        return {int(row.split("\t")[column]) for row in rows}

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def pgbouncer_or_skip() -> Iterator[PgBouncer]:
    """A PgBouncer in front of the test PostgreSQL, or the test skipped with the reason."""
    base = pg_base_url()  # skips without PAYGATE_TEST_DATABASE_URL
    try:
        pooler = PgBouncer(base)
    except Unavailable as exc:
        pytest.skip(f"no PgBouncer: {exc}")
    with pooler:
        yield pooler


def through(pooler: PgBouncer, direct_url: str) -> str:
    """The URL of ``direct_url``'s database through ``pooler``."""
    return pooler.url(make_url(direct_url).database or "")


def paygate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``paygate <args>`` run to its end with ``env`` on top of this process's."""
    return subprocess.run([sys.executable, "-m", "paygate_server", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def migrate_through(pooler: PgBouncer, direct_url: str, data_dir: Path) -> None:
    """``paygate db upgrade`` on ``direct_url``'s database, through ``pooler``, configured as
    an operator would (docs/operations.md, "Behind PgBouncer")."""
    done = paygate("db", "upgrade", env=gateway_env(through(pooler, direct_url), data_dir,
                                                    PAYGATE_DATABASE_SESSION_URL=direct_url))
    assert done.returncode == 0, done.stderr


async def lease_holders(direct_url: str) -> list[int]:
    """The backends holding a relay lease's advisory lock in ``direct_url``'s database."""
    db = create_database(direct_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :c"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"c": _LEASE_LOCK_CLASS})
            return sorted(r[0] for r in rows)
    finally:
        await db.dispose()
