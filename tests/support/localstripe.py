"""localstripe (a fake Stripe server, https://github.com/adrienverge/localstripe) as a real
child process on loopback, for the Stripe connector's tests.

How it is run, and why not with its own ``localstripe`` command:

- the parent binds the listening socket on 127.0.0.1 (port 0: the OS chooses) and hands the
  descriptor over, as ``paygate_server.procs`` does for the gateway: no window in which
  another process can take the port, and nothing listens beyond loopback (the command binds
  ``::`` on every interface);
- localstripe pickles its whole store to the fixed path ``/tmp/localstripe.pickle`` after
  every POST and loads it at start; two test workers would share (and race on) that file.
  The child replaces that persistence with nothing, so each instance starts empty and
  keeps its objects in memory only. Everything else is localstripe's own code.

Readiness is polled (bounded); the process is killed at teardown. If it cannot start, the
tests that need it are skipped with the reason.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.eventually import eventually_sync

__all__ = ["SECRET_KEY", "enter_localstripe", "localstripe_or_skip", "start_localstripe"]

# localstripe accepts any key that starts with "sk_"; this one is the tests' own.
SECRET_KEY = "sk_test_paygate_localstripe_0123456789"

_CHILD = """
import socket, sys
from aiohttp import web
import localstripe.resources as resources
resources.Store.dump_to_disk = lambda self: None  # no shared /tmp/localstripe.pickle
from localstripe import server
sock = socket.socket(fileno=int(sys.argv[1]))
web.run_app(server.app, sock=sock, print=None, access_log=None)
"""


@contextlib.contextmanager
def start_localstripe(log_dir: Path, *, startup_timeout_s: float = 20.0) -> Iterator[str]:
    """Run localstripe; yields its base URL (``http://127.0.0.1:PORT``)."""
    if importlib.util.find_spec("localstripe") is None:
        raise RuntimeError("localstripe is not installed")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log_path = log_dir / "localstripe.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(sock.fileno())], stdout=log,
                                stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),), start_new_session=True)
    sock.close()  # the child has its own copy
    try:
        _wait_ready(proc, url, startup_timeout_s, log_path)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float, log_path: Path) -> None:
    with httpx.Client(timeout=1.0) as client:

        def serving() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"localstripe exited with {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                # Any authenticated answer means the app is serving.
                answer = client.get(url + "/v1/balance", headers={"Authorization": f"Bearer {SECRET_KEY}"})
            except httpx.TransportError:
                return False
            return answer.status_code == 200

        try:
            eventually_sync(serving, timeout=timeout_s, interval=0.05, what="localstripe answering")
        except AssertionError:
            raise RuntimeError(f"localstripe did not answer within {timeout_s} s") from None


def enter_localstripe(stack: contextlib.ExitStack, log_dir: Path) -> str:
    """localstripe started on ``stack`` (stopped when the stack closes): its base URL. The
    test, or the tests of a module-scoped fixture, are skipped with the reason if it cannot
    start."""
    try:
        return stack.enter_context(start_localstripe(log_dir))
    except RuntimeError as exc:
        pytest.skip(f"localstripe cannot start: {exc}")


def localstripe_or_skip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The body of a module-scoped fixture (``yield from`` it): one localstripe per test
    module; the module's tests are skipped, with the reason, if it cannot start."""
    with contextlib.ExitStack() as stack:
        yield enter_localstripe(stack, tmp_path_factory.mktemp("localstripe"))
