"""Durability across SIGKILL, and no card data in the store files or the process output."""

from __future__ import annotations

import asyncio
import pathlib
import re
from collections.abc import Callable

import httpx

from paygate_server.simulator.testing import (
    SimulatorProcess,
    TestCards,
    capture_payload,
    charge_payload,
    list_charges,
    void_payload,
)

ALL_CARDS = [
    value for name, value in vars(TestCards).items() if name.isupper() and isinstance(value, str)
]


async def test_charges_survive_sigkill_right_after_the_answer(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory("durable")
    payloads = [charge_payload(TestCards.VISA, payment_intent_id="pi_durable") for _ in range(50)]
    refund = {"reference": "re_durable", "chargeReference": payloads[0]["reference"], "amount": 5}
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        answers = await asyncio.gather(*(c.post("/v1/charges", json=p) for p in payloads))
        assert (await c.post("/v1/refunds", json=refund)).status_code == 200
    process.kill()  # no shutdown code, no final checkpoint
    assert process.proc is not None and process.proc.returncode == -9

    process.start()  # the same store, the same address
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        listed = (await c.get("/v1/charges", params={"paymentIntentId": "pi_durable"})).json()
        assert sorted(ch["reference"] for ch in listed["data"]) == sorted(
            p["reference"] for p in payloads
        )
        # Every answer given before the crash is still the answer after it.
        for payload, answer in zip(payloads, answers, strict=True):
            replay = await c.post("/v1/charges", json=payload)
            assert replay.content == answer.content
            assert replay.headers["idempotent-replayed"] == "true"
        assert (await c.get(f"/v1/refunds/{refund['reference']}")).status_code == 200
        first = (await c.get(f"/v1/charges/{payloads[0]['reference']}")).json()
        assert first["amountRefunded"] == 5


async def test_1034_retry_mark_survives_a_restart(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory("retry-mark")
    payload = charge_payload(TestCards.RETRY_FIRST)
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        assert (await c.post("/v1/charges", json=payload)).status_code == 503
    process.kill()
    process.start()
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        assert (await c.post("/v1/charges", json=payload)).status_code == 200


async def test_authorizations_captures_and_voids_survive_sigkill(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory("durable-holds")
    intent = "pi_durable_holds"
    auths = [charge_payload(TestCards.VISA, payment_intent_id=intent, capture=False)
             for _ in range(30)]
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        await asyncio.gather(*(c.post("/v1/charges", json=p) for p in auths))
        captures = [capture_payload(p["reference"], 100 + i) for i, p in enumerate(auths[:10])]
        voids = [void_payload(p["reference"]) for p in auths[10:20]]
        answers = await asyncio.gather(
            *(c.post("/v1/captures", json=p) for p in captures),
            *(c.post("/v1/voids", json=p) for p in voids),
        )
        assert [a.json()["status"] for a in answers] == ["captured"] * 10 + ["voided"] * 10
    process.kill()  # right after the answers: no shutdown code, no checkpoint
    process.start()
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:
        rows = {r["reference"]: r for r in list_charges(process.base_url, intent)}
        assert len(rows) == 30
        for i, p in enumerate(auths):
            row = rows[p["reference"]]
            assert row["capture"] is False
            assert row["amountCaptured"] == (100 + i if i < 10 else 0)
            assert row["voided"] is (10 <= i < 20)
        # Every answer given before the crash is still the answer after it...
        for payload, answer in zip(captures + voids, answers, strict=True):
            path = "captures" if payload in captures else "voids"
            replay = await c.post(f"/v1/{path}", json=payload)
            assert replay.content == answer.content
            assert replay.headers["idempotent-replayed"] == "true"
        # ...and a hold is still taken once: a new capture of a captured one is refused.
        again = await c.post("/v1/captures", json=capture_payload(auths[0]["reference"], 1))
        assert again.json()["declineCode"] == "already_captured"
        # The untouched holds are still capturable.
        late = await c.post("/v1/captures", json=capture_payload(auths[25]["reference"], 1000))
        assert late.json()["status"] == "captured"


def _store_bytes(process: SimulatorProcess) -> bytes:
    files = sorted(process.store_path.parent.glob(process.store_path.name + "*"))
    files = [f for f in files if not f.name.endswith(".log")]
    assert files, "no store files found"
    return b"".join(pathlib.Path(f).read_bytes() for f in files)


async def test_no_card_number_or_cvc_in_store_or_output(
    simulator_factory: Callable[..., SimulatorProcess],
) -> None:
    process = simulator_factory("leak")
    cvc = "8461"
    extra = ["4111111111111111", "4242424242424241"]  # any valid card, a bad-Luhn one
    payloads = [charge_payload(number, cvc=cvc) for number in ALL_CARDS + extra]
    # The same cards again as authorizations (capture: false).
    payloads += [charge_payload(number, cvc=cvc, capture=False) for number in ALL_CARDS + extra]
    async with httpx.AsyncClient(base_url=process.base_url, timeout=10.0) as c:

        async def post(payload: dict) -> None:
            try:
                await c.post("/v1/charges", json=payload, timeout=httpx.Timeout(5.0, read=0.2))
            except httpx.TransportError:
                pass  # 1018 times out, 1026 drops: both are still recorded

        await asyncio.gather(*(post(p) for p in payloads))
        await asyncio.gather(*(post(p) for p in payloads))  # 1034's approved retry
        # Malformed requests carrying a card number must not leak either.
        await c.post("/v1/charges", json={**payloads[0], "amount": "x"})
        await c.post("/v1/charges", content=b'{"card": {"number": "4242424242424242"')
        listed = (
            await c.get("/v1/charges", params={"merchantId": payloads[0]["merchantId"]})
        ).json()["data"]
        recorded = {ch["reference"] for ch in listed}
        # The store did get the charges (so the check below is not vacuous).
        assert {p["reference"] for p in payloads if p["card"]["number"] in extra} <= recorded
        assert payloads[ALL_CARDS.index(TestCards.SLOW_ANSWER)]["reference"] in recorded
        live = _store_bytes(process)
    process.stop()  # graceful: checkpoints the WAL into the main file
    stopped = _store_bytes(process)
    output = process.output()
    assert "Started server process" in output  # we really captured the output
    assert "Traceback" not in output
    for blob in (live, stopped):
        assert b"4242" in blob  # last4 is stored...
        for number in ALL_CARDS + extra:
            assert number.encode() not in blob  # ...the number never
        # A 4-digit CVC can occur by chance inside random references or timestamps, so look
        # for it as a value of its own (not flanked by letters or digits).
        assert not re.search(rb"(?<![0-9A-Za-z])" + cvc.encode() + rb"(?![0-9A-Za-z])", blob)
    for number in ALL_CARDS + extra:
        assert number not in output
    assert not re.search(r"(?<![0-9A-Za-z])" + cvc + r"(?![0-9A-Za-z])", output)
