"""Run the simulator as a real child process, for tests and local tooling.

    from paygate_server.simulator.testing import start_simulator

    with start_simulator(tmp_path, slow_card_delay_s=1.0) as base_url:
        ...  # http://127.0.0.1:<free port>

The parent binds the listening socket (port 0, so the OS picks a free port) and hands it
to the child, so there is no window in which another process can take the port, and a
child killed with SIGKILL can be restarted on the very same address.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any, Self

import httpx

__all__ = ["SimulatorProcess", "TestCards", "charge_payload", "start_simulator"]


class TestCards:
    """The SPEC §7 test card numbers, by behaviour."""

    __test__ = False  # not a pytest test class

    VISA = "4242424242424242"
    MASTERCARD = "5555555555554444"
    AMEX = "378282246310005"
    GENERIC_DECLINE = "4000000000000002"
    INSUFFICIENT_FUNDS = "4000000000009995"
    EXPIRED_CARD = "4000000000000069"
    INCORRECT_CVC = "4000000000000127"
    PROCESSING_ERROR = "4000000000000119"
    SLOW_ANSWER = "4000000000001018"
    DROPPED_ANSWER = "4000000000001026"
    RETRY_FIRST = "4000000000001034"
    DELAYED_APPROVAL = "4000000000001042"


def charge_payload(
    number: str = TestCards.VISA,
    *,
    reference: str | None = None,
    payment_intent_id: str | None = None,
    merchant_id: str = "mer_test",
    amount: int = 1000,
    currency: str = "USD",
    exp_month: int = 12,
    exp_year: int | None = None,
    cvc: str | None = "123",
) -> dict[str, Any]:
    """A ``POST /v1/charges`` body; fresh random reference and intent unless given."""
    card: dict[str, Any] = {
        "number": number,
        "expMonth": exp_month,
        "expYear": exp_year if exp_year is not None else time.gmtime().tm_year + 3,
    }
    if cvc is not None:
        card["cvc"] = cvc
    return {
        "reference": reference or f"txn_{uuid.uuid4().hex}",
        "paymentIntentId": payment_intent_id or f"pi_{uuid.uuid4().hex}",
        "merchantId": merchant_id,
        "amount": amount,
        "currency": currency,
        "card": card,
    }


class SimulatorProcess:
    """One simulator child process (restartable) on a fixed, pre-bound address."""

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        *,
        log_path: str | os.PathLike[str] | None = None,
        slow_card_delay_s: float = 30.0,
        seed: int | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store_path = pathlib.Path(store_path)
        self.log_path = (
            pathlib.Path(log_path)
            if log_path is not None
            else self.store_path.with_name(self.store_path.name + ".log")
        )
        self.slow_card_delay_s = slow_card_delay_s
        self.seed = seed
        self.startup_timeout_s = startup_timeout_s
        self.env = env
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self._sock.listen(1024)
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
        """Spawn the child and wait until ``/healthz`` answers (or fail with its output)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("simulator already running")
        fd = self._sock.fileno()
        cmd = [
            sys.executable,
            "-m",
            "paygate_server.simulator",
            "--fd",
            str(fd),
            "--store",
            str(self.store_path),
            "--slow-card-delay",
            repr(self.slow_card_delay_s),
            "--log-level",
            "info",
        ]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if self.env:
            env.update(self.env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(fd,), env=env
        )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=1.0) as client:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"simulator exited with {self.proc.returncode}:\n{self.output()}"
                    )
                try:
                    if client.get(self.base_url + "/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"simulator not healthy in time:\n{self.output()}")
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the crash case)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the child and release the listening socket."""
        self.stop()
        self._sock.close()

    def output(self) -> str:
        """Everything the child wrote to stdout/stderr so far."""
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

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def start_simulator(
    tmp_path: str | os.PathLike[str],
    *,
    slow_card_delay_s: float = 30.0,
    seed: int | None = None,
    name: str = "simulator",
    **kwargs: Any,
) -> Iterator[str]:
    """Start a simulator child process with its store under ``tmp_path``; yield its
    base URL; stop it on exit. Extra keyword arguments go to :class:`SimulatorProcess`."""
    directory = pathlib.Path(tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    with SimulatorProcess(
        directory / f"{name}.sqlite3",
        slow_card_delay_s=slow_card_delay_s,
        seed=seed,
        **kwargs,
    ) as process:
        yield process.base_url
