"""Run a paygate service (gateway, simulator, storefront) as a real child process.

Used by ``paygate demo`` and by the end-to-end tests. The parent binds the listening
socket itself (port 0 lets the OS choose) and hands the descriptor to the child, so there
is no window in which another process can take the port, and a child killed with SIGKILL
restarts on the very same address.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Self

import httpx

from paygate_server.private_files import private_dir

__all__ = ["ServiceProcess", "console_command", "gateway_command", "simulator_command"]


def gateway_command(fd: int, *, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "paygate_server", "serve", "--fd", str(fd),
            "--workers", str(workers), "--log-level", "warning"]


def console_command(fd: int) -> list[str]:
    return [sys.executable, "-m", "paygate_server", "console", "--fd", str(fd), "--log-level", "warning"]


def simulator_command(fd: int, store: Path) -> list[str]:
    return [sys.executable, "-m", "paygate_server.simulator", "--fd", str(fd), "--store", str(store),
            "--log-level", "warning"]


class ServiceProcess:
    def __init__(self, command: Callable[[int], Sequence[str]], *, log_path: Path, env: dict[str, str] | None = None,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 30.0) -> None:
        self._command = command
        self.log_path = Path(log_path)
        self.env = env or {}
        self.startup_timeout_s = startup_timeout_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn wraps an inherited descriptor as AF_UNIX and so never sets TCP_NODELAY on
        # what it accepts; set it here (Linux copies it to accepted sockets), or every
        # response written in two segments waits ~40 ms for the client's delayed ACK.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind((host, port))
        self._sock.listen(2048)
        self.host, self.port = self._sock.getsockname()[:2]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the child and wait until it answers ``GET /healthz``."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("already running")
        fd = self._sock.fileno()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        private_dir(self.log_path.parent)
        # Logs may name merchants and intents: owner only, like the rest of the data directory.
        self._log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        self.proc = subprocess.Popen(list(self._command(fd)), stdout=self._log, stderr=subprocess.STDOUT,
                                     pass_fds=(fd,), env=env, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.log_path.name}: exited with {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.base_url + "/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"{self.log_path.name}: not healthy in time:\n{self.output()}")
                time.sleep(0.05)  # polling a child's start-up, bounded by the deadline

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the child and any workers it forked

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the crash case)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._close_log()

    def close(self) -> None:
        self.stop()
        self._sock.close()

    def output(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
