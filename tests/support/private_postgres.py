"""A PostgreSQL server of the test's own, for faults no test may inflict on the shared one
(a restart under load): ``initdb`` into a fresh directory and ``pg_ctl`` on a free loopback
port, stopped and removed afterwards.

PostgreSQL refuses to run as root; when the tests do (CI), the server runs as the
``postgres`` user through ``runuser``, in a directory that user owns. Where none of that is
possible the caller skips with :class:`Unavailable`'s reason.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

__all__ = ["PrivatePostgres", "Unavailable"]

_SERVER_USER = "postgres"


class Unavailable(RuntimeError):
    """No private PostgreSQL can be made here (the message says why)."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise Unavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    def __init__(self) -> None:
        self._bin = _bin_dir()
        self._as_user: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                self._owner = pwd.getpwnam(_SERVER_USER)
            except KeyError:
                raise Unavailable(f"running as root and there is no {_SERVER_USER!r} user to run PostgreSQL as") from None
            if runuser is None:
                raise Unavailable("running as root and there is no runuser to run PostgreSQL as another user")
            self._as_user = [runuser, "-u", _SERVER_USER, "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="paygate-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        self.user = self._owner.pw_name if self._owner is not None else pwd.getpwuid(os.geteuid()).pw_name

    def url(self, database: str = "postgres", port: int | None = None, host: str = "127.0.0.1") -> str:
        """The server's URL, or that of a proxy in front of it (``host``, ``port``)."""
        return f"postgresql://{self.user}@{host}:{port or self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as_user, str(self._bin / tool), *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}\n{self.server_log()}")

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def start(self) -> None:
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        os.chmod(self.dir, 0o700)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        self.resume()

    def resume(self) -> None:
        """Start the server (again, after :meth:`stop`) on its data and port."""
        # Loopback only, its socket file in its own directory, no fsync (nothing here
        # outlives the test; a fast restart still checkpoints).
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                   "-c fsync=off -c max_connections=200")
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m <mode>``: every connection is closed, the server comes back
        on the same port."""
        self._run("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "-t", "60")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60")

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
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
