"""``paygate …`` without a new interpreter, for tests of refusals that are not about the process.

``python -m paygate_server`` calls :func:`paygate_server.command.main`; this calls the same
function here, with the environment's ``PAYGATE_*`` variables replaced as a test's subprocess
would have them (restored afterwards), and returns what a subprocess run would: the exit
status (argparse's ``SystemExit`` included) and everything written to descriptors 1 and 2
(``capfd``, so a log handler writing to the real stderr is seen too). A traceback is an
exception out of ``main``: it fails the test as the subprocess's traceback would. The
process's umask, which ``paygate`` sets, is put back after each call. About a
second less per call than a new interpreter importing the gateway.
"""
from __future__ import annotations

import os
import subprocess

import pytest

from paygate_server.command import main as command_main

__all__ = ["PaygateInProcess"]


class PaygateInProcess:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
        self._monkeypatch = monkeypatch
        self._capfd = capfd

    def __call__(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        with self._monkeypatch.context() as patched:
            for name in [k for k in os.environ if k.startswith("PAYGATE_")]:
                patched.delenv(name)
            for name, value in env.items():
                patched.setenv(name, value)
            self._capfd.readouterr()
            umask = os.umask(0o022)  # paygate sets its own (077): this process's is put back after
            os.umask(umask)
            try:
                code = command_main(list(args))
            except SystemExit as exited:
                code = exited.code if isinstance(exited.code, int) else 1
            finally:
                os.umask(umask)
            out = self._capfd.readouterr()
        return subprocess.CompletedProcess(["paygate", *args], code, out.out, out.err)
