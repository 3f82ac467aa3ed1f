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
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from paygate_server.procs import ServiceProcess

__all__ = [
    "SimulatorProcess",
    "TestCards",
    "advance_clock",
    "capture_payload",
    "charge_payload",
    "list_charges",
    "set_faults",
    "start_simulator",
    "void_payload",
]


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
    capture: bool | None = None,
) -> dict[str, Any]:
    """A ``POST /v1/charges`` body; fresh random reference and intent unless given.
    ``capture=False``: an authorization (left out: the simulator's default, a charge)."""
    card: dict[str, Any] = {
        "number": number,
        "expMonth": exp_month,
        "expYear": exp_year if exp_year is not None else time.gmtime().tm_year + 3,
    }
    if cvc is not None:
        card["cvc"] = cvc
    payload: dict[str, Any] = {
        "reference": reference or f"txn_{uuid.uuid4().hex}",
        "paymentIntentId": payment_intent_id or f"pi_{uuid.uuid4().hex}",
        "merchantId": merchant_id,
        "amount": amount,
        "currency": currency,
        "card": card,
    }
    if capture is not None:
        payload["capture"] = capture
    return payload


def capture_payload(
    charge_reference: str, amount: int, *, reference: str | None = None
) -> dict[str, Any]:
    """A ``POST /v1/captures`` body; a fresh random reference unless given."""
    return {
        "reference": reference or f"cap_{uuid.uuid4().hex}",
        "chargeReference": charge_reference,
        "amount": amount,
    }


def void_payload(charge_reference: str, *, reference: str | None = None) -> dict[str, Any]:
    """A ``POST /v1/voids`` body; a fresh random reference unless given."""
    return {"reference": reference or f"void_{uuid.uuid4().hex}", "chargeReference": charge_reference}


def refund_payload(
    charge_reference: str, amount: int, *, reference: str | None = None
) -> dict[str, Any]:
    """A ``POST /v1/refunds`` body; a fresh random reference unless given."""
    return {
        "reference": reference or f"re_{uuid.uuid4().hex}",
        "chargeReference": charge_reference,
        "amount": amount,
    }


# Blocking helpers for tests that hold the simulator's records up as the oracle.


def list_charges(base_url: str, payment_intent_id: str) -> list[dict[str, Any]]:
    """Every charge and authorization the simulator recorded for an intent, oldest first:
    rows of ``GET /v1/charges`` (``status``, ``capture``, ``captured``,
    ``amountCaptured``, ``voided``, ``expired``, ``amountRefunded``, ..., and
    ``captures``, ``voids``, ``refunds``: the references of every such request recorded
    against it, in the order recorded, so a test can count how many reached it)."""
    with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
        response = client.get("/v1/charges", params={"paymentIntentId": payment_intent_id})
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()["data"]
        return data


def set_faults(base_url: str, **faults: float) -> dict[str, Any]:
    """Replace the fault configuration (``latencyMs``, ``errorRate``, ...,
    ``authorizationTtlS``); omitted faults are off. Returns the new configuration."""
    with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
        response = client.post("/v1/_faults", json=faults)
        response.raise_for_status()
        config: dict[str, Any] = response.json()
        return config


def advance_clock(base_url: str, seconds: float) -> dict[str, Any]:
    """Move the simulator's clock ahead (holds expire on it): ``{"now", "offsetS"}``."""
    with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
        response = client.post("/v1/_clock", json={"advanceS": seconds})
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state


class SimulatorProcess(ServiceProcess):
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
        self.slow_card_delay_s = slow_card_delay_s
        self.seed = seed
        super().__init__(
            self._command,
            log_path=pathlib.Path(log_path) if log_path is not None
            else self.store_path.with_name(self.store_path.name + ".log"),
            env=env,
            host=host,
            startup_timeout_s=startup_timeout_s,
        )

    def _command(self, fd: int) -> list[str]:
        cmd = [
            sys.executable, "-m", "paygate_server.simulator",
            "--fd", str(fd),
            "--store", str(self.store_path),
            "--slow-card-delay", repr(self.slow_card_delay_s),
            "--log-level", "info",
        ]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        return cmd


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
