"""Races on one authorization, with real concurrent requests to simulator processes: the
simulator's ledger is the oracle, and it holds exactly one capture or void."""

from __future__ import annotations

import asyncio
import pathlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from paygate_server.simulator.testing import (
    SimulatorProcess,
    capture_payload,
    charge_payload,
    list_charges,
    void_payload,
)

_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=200)


@pytest.fixture
def process(simulator_factory: Callable[..., SimulatorProcess]) -> SimulatorProcess:
    return simulator_factory("races")


@pytest.fixture
async def sim(process: SimulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=process.base_url, timeout=30.0, limits=_LIMITS) as c:
        yield c


async def _authorize(sim: httpx.AsyncClient, amount: int = 1000) -> dict[str, Any]:
    body = (await sim.post("/v1/charges", json=charge_payload(amount=amount, capture=False))).json()
    assert body["status"] == "approved"
    return body  # type: ignore[no-any-return]


async def test_100_concurrent_captures_capture_once(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    auth = await _authorize(sim, 1000)
    payloads = [capture_payload(auth["reference"], 500 + i) for i in range(100)]
    answers = await asyncio.gather(*(sim.post("/v1/captures", json=p) for p in payloads))
    assert all(a.status_code == 200 for a in answers)
    bodies = [a.json() for a in answers]
    outcomes = Counter((b["status"], b["declineCode"]) for b in bodies)
    assert outcomes == {("captured", None): 1, ("refused", "already_captured"): 99}
    [winner] = [b for b in bodies if b["status"] == "captured"]
    [row] = list_charges(process.base_url, auth["paymentIntentId"])
    assert (row["captured"], row["amountCaptured"], row["voided"]) == (True, winner["amount"], False)
    # Every answer is the recorded one, refusals included.
    for payload, body in zip(payloads, bodies, strict=True):
        assert (await sim.get(f"/v1/captures/{payload['reference']}")).json() == body


async def test_the_same_capture_reference_100_times_at_once_is_one_capture(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    auth = await _authorize(sim, 1000)
    payload = capture_payload(auth["reference"], 250)
    answers = await asyncio.gather(*(sim.post("/v1/captures", json=payload) for _ in range(100)))
    assert {a.content for a in answers} == {answers[0].content}
    assert answers[0].json()["status"] == "captured"
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
    [row] = list_charges(process.base_url, auth["paymentIntentId"])
    assert row["amountCaptured"] == 250


def _judge(bodies: list[tuple[str, dict[str, Any]]], row: dict[str, Any]) -> str:
    """The one consistent story of a capture/void race, or an assertion error."""
    captures = [b for kind, b in bodies if kind == "capture"]
    voids = [b for kind, b in bodies if kind == "void"]
    won = [b for b in captures if b["status"] == "captured"]
    if won:  # the capture came first: one capture, every void refused
        assert len(won) == 1
        assert all(b["declineCode"] == "already_captured" for b in captures if b is not won[0])
        assert all((b["status"], b["declineCode"]) == ("refused", "already_captured") for b in voids)
        assert (row["captured"], row["amountCaptured"], row["voided"]) == (True, won[0]["amount"], False)
        return "captured"
    # A void came first: every capture refused as voided, the hold voided.
    assert all((b["status"], b["declineCode"]) == ("refused", "authorization_voided") for b in captures)
    assert voids and all(b["status"] == "voided" for b in voids)
    assert (row["captured"], row["amountCaptured"], row["voided"]) == (False, 0, True)
    return "voided"


async def test_50_mixed_captures_and_voids_one_wins(
    process: SimulatorProcess, sim: httpx.AsyncClient
) -> None:
    rng = random.Random(17)
    stories: Counter[str] = Counter()
    for _ in range(6):
        auth = await _authorize(sim, 1000)
        ops: list[tuple[str, dict[str, Any]]] = [
            ("capture", capture_payload(auth["reference"], 1000)) for _ in range(25)
        ] + [("void", void_payload(auth["reference"])) for _ in range(25)]
        rng.shuffle(ops)
        answers = await asyncio.gather(
            *(sim.post("/v1/captures" if kind == "capture" else "/v1/voids", json=p) for kind, p in ops)
        )
        assert all(a.status_code == 200 for a in answers)
        bodies = [(kind, a.json()) for (kind, _), a in zip(ops, answers, strict=True)]
        [row] = list_charges(process.base_url, auth["paymentIntentId"])
        stories[_judge(bodies, row)] += 1
    assert sum(stories.values()) == 6


async def test_two_processes_on_one_store_capture_once(
    simulator_factory: Callable[..., SimulatorProcess], tmp_path: pathlib.Path
) -> None:
    """Several simulator processes on one file: BEGIN IMMEDIATE serializes their writers,
    and the hold is read inside the write transaction, so one capture wins across them."""
    first = simulator_factory("shared")
    second = simulator_factory("shared", log_path=tmp_path / "second.log")
    async with (
        httpx.AsyncClient(base_url=first.base_url, timeout=30.0, limits=_LIMITS) as a,
        httpx.AsyncClient(base_url=second.base_url, timeout=30.0, limits=_LIMITS) as b,
    ):
        for _ in range(3):
            auth = await _authorize(a, 1000)
            ops = [
                (client, kind, capture_payload(auth["reference"], 900) if kind == "capture"
                 else void_payload(auth["reference"]))
                for client in (a, b) for kind in ("capture", "void") for _ in range(20)
            ]
            random.Random(3).shuffle(ops)
            answers = await asyncio.gather(
                *(c.post(f"/v1/{kind}s", json=p) for c, kind, p in ops)
            )
            assert all(r.status_code == 200 for r in answers), [r.text for r in answers][:3]
            bodies = [(kind, r.json()) for (_, kind, _), r in zip(ops, answers, strict=True)]
            [row] = list_charges(second.base_url, auth["paymentIntentId"])
            _judge(bodies, row)
