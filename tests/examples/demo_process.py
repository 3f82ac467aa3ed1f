"""``paygate demo`` as a child process, for the tests: every port chosen by the OS, the
URLs read from its banner, and a clean Ctrl-C (SIGINT) stop that is checked."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import paygate

REPO = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 60
STOP_DEADLINE_S = 30


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    lines: list[str]
    shop: str
    gateway: str
    simulator: str
    console: str
    data_dir: Path

    @property
    def banner(self) -> str:
        return "\n".join(self.lines)

    def credentials(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "demo-merchant.json").read_text())  # type: ignore[no-any-return]

    def sdk(self) -> paygate.Client:
        creds = self.credentials()
        return paygate.Client(creds["apiKey"], creds["signingSecret"], self.gateway)

    def child_pid(self, module: str) -> int:
        """The pid of the demo's child process that runs ``python -m module`` (its simulator:
        ``paygate_server.simulator``)."""
        pids = [int(pid) for children in Path(f"/proc/{self.proc.pid}/task").glob("*/children")
                for pid in children.read_text().split()]
        found = [pid for pid in pids
                 if ["-m", module] in _pairs(Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"))]
        assert len(found) == 1, f"not one child of the demo runs -m {module}: {found}"
        return found[0]

    def charges(self, intent_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.simulator}/v1/charges", params={"paymentIntentId": intent_id})
        r.raise_for_status()
        return r.json()["data"]  # type: ignore[no-any-return]


def _pairs(args: list[str]) -> list[list[str]]:
    return [args[i:i + 2] for i in range(len(args) - 1)]


def _read_lines(stream: Any, sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line.rstrip("\n"))
    sink.put(None)


def banner_url(banner: str, name: str) -> str:
    match = re.search(rf"^  {name}\s+(http://\S+?)/?\s", banner + " ", re.MULTILINE)
    assert match is not None, f"no {name} URL in the demo's banner:\n{banner}"
    return match.group(1)


@contextlib.contextmanager
def running_demo(data_dir: Path, python: str = sys.executable, **env: str) -> Iterator[Demo]:
    """Start ``paygate demo`` with ``PAYGATE_DATA_DIR=data_dir`` (under ``python``, this
    interpreter by default); on exit, stop it with SIGINT and check that it exited 0, said
    so, and took its children with it."""
    full_env = {**os.environ, "PAYGATE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **env}
    full_env.pop("PAYGATE_DATABASE_URL", None)  # the demo's own SQLite file in its data dir
    proc = subprocess.Popen(
        [python, "-m", "paygate_server", "demo", "--port", "0", "--simulator-port", "0",
         "--storefront-port", "0", "--console-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=REPO,
    )
    lines: list[str] = []
    sink: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(proc.stdout, sink), daemon=True).start()
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    try:
        while not any("Press Ctrl-C to stop." in line for line in lines):
            try:
                line = sink.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("paygate demo did not start in time:\n" + "\n".join(lines)) from None
            if line is None:
                raise AssertionError(f"paygate demo exited ({proc.wait()}):\n" + "\n".join(lines))
            lines.append(line)
        banner = "\n".join(lines)
        yield Demo(proc, lines, banner_url(banner, "shop"), banner_url(banner, "gateway"),
                   banner_url(banner, "simulator"), banner_url(banner, "console"), data_dir)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            code = proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        while (line := sink.get(timeout=5)) is not None:
            lines.append(line)
    assert code == 0, "\n".join(lines)
    assert lines[-1] == "paygate demo stopped."
    banner = "\n".join(lines)
    for name in ("shop", "gateway", "simulator", "console"):
        try:
            httpx.get(banner_url(banner, name) + "/healthz", timeout=2)
        except httpx.ConnectError:
            continue
        raise AssertionError(f"the demo's {name} still answers after Ctrl-C")
