"""Payments under load against a real gateway, recorded call by call, and the checks a
fault test makes of that history (docs/reliability.md, "Network and database faults").

A few concurrent clients each pay again and again: create an intent, then process it with
an encrypted test card, both with Idempotency-Keys; a ``503`` is retried with the same key
(a fresh signature), as the SDK does. Every HTTP call is recorded with when it started, how
long it took and how it ended, so a test can ask what happened *during* a fault window:

* every answer was a success, a client error, or ``503 service_unavailable`` with
  ``Retry-After`` — never another 5xx, never a dropped connection, never a client timeout;
* the slowest call (the bound a fault test asserts and reports);

and, once the faults are over and the reconciler has run, :func:`check_settled` holds the
gateway to the processor's ledger (the simulator is the oracle): no intent left
``in_progress``, every intent a client saw ``succeeded`` is ``succeeded``, every
``succeeded`` intent has exactly one approved charge and no other intent has any.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

import paygate
from tests.support.eventually import eventually
from tests.support.signing import Credentials, SignedClient

__all__ = ["Call", "PaymentLoad", "Window", "approved_charges", "check_settled", "intents_of", "summarize"]

# A client gives up on a call after this long: a gateway that hangs longer has failed.
CLIENT_TIMEOUT_S = 20.0
# Tries of one call (the same Idempotency-Key) before the client moves on to a new payment;
# what it leaves behind is the reconciler's to settle.
TRIES = 4
RETRY_PAUSE_S = 0.1  # between tries: a retry loop's pacing (Retry-After is 2 s; load wants more calls)
CARD = "4242424242424242"
# Answers retried with the same key: the gateway's 503, and a load balancer's 502/504 for a
# request in flight on a host that died (safe: the Idempotency-Key makes it one request).
RETRIED = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Call:
    op: str                 # "create" or "process"
    started: float          # time.monotonic()
    seconds: float
    status: int | None      # None: no HTTP answer (see ``failure``)
    code: str | None = None  # the error code of an error answer
    retry_after: str | None = None
    failure: str | None = None  # a transport error or the client's timeout

    @property
    def acceptable(self) -> bool:
        """An answer a fault may cause: success, a client error, or 503 with Retry-After."""
        if self.status is None:
            return False
        if self.status >= 500:
            return self.status == 503 and self.code == "service_unavailable" and bool(self.retry_after)
        return True

    def describe(self) -> str:
        return f"{self.op} {self.status or self.failure} {self.code or ''} after {self.seconds:.2f}s"


@dataclass
class PaymentLoad:
    base_url: str
    creds: Credentials
    jwks: dict[str, Any]
    clients: int = 4
    calls: list[Call] = field(default_factory=list)
    intents: set[str] = field(default_factory=set)
    seen_succeeded: set[str] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._client()) for _ in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _client(self) -> None:
        timeout = httpx.Timeout(CLIENT_TIMEOUT_S, connect=5.0)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=timeout) as http:
            client = SignedClient(http, self.creds)
            while not self._stop.is_set():
                await self._pay(client)

    async def _call(self, client: SignedClient, op: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """One call with retries on 503 (same key); the answer's body when it succeeded."""
        key = uuid.uuid4().hex
        for _ in range(TRIES):
            started = time.monotonic()
            try:
                r = await client.post(path, body, idempotency_key=key)
            except httpx.TransportError as exc:  # includes the client's timeout
                # Recorded (never acceptable during a window), and retried with the key like
                # any answer that may not have been the request's last word.
                self.calls.append(Call(op, started, time.monotonic() - started, None, failure=type(exc).__name__))
                continue
            seconds = time.monotonic() - started
            code = None
            if r.status_code >= 400:
                try:
                    code = r.json()["error"]["code"]
                except (ValueError, KeyError, TypeError):
                    code = "unparsable"
            self.calls.append(Call(op, started, seconds, r.status_code, code, r.headers.get("retry-after")))
            if r.status_code < 300:
                answer: dict[str, Any] = r.json()
                return answer
            if r.status_code not in RETRIED and code != "idempotency_request_in_progress":
                return None
            await asyncio.sleep(RETRY_PAUSE_S)  # pacing between tries
        return None

    async def _pay(self, client: SignedClient) -> None:
        intent = await self._call(client, "create", "/api/v1/payment/intent", {
            "amount": 1999, "currency": "USD", "productDetails": {"sku": "mug-01", "name": "Mug"}})
        if intent is None:
            return
        intent_id = intent["paymentIntentId"]
        self.intents.add(intent_id)
        jwe = paygate.encrypt_card(self.jwks, number=CARD, exp_month=12, exp_year=2034, cvc="123")
        processed = await self._call(client, "process", "/api/v1/payment/process", {
            "paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
        if processed is not None and processed.get("status") == "succeeded":
            self.seen_succeeded.add(intent_id)

    # --- what happened when ------------------------------------------------------------

    def during(self, start: float, end: float) -> list[Call]:
        """The calls under way at some moment of [start, end) (monotonic times): those that
        started in it, and those it caught in flight."""
        return [c for c in self.calls if c.started < end and c.started + c.seconds > start]

    def succeeded_after(self, moment: float) -> Call | None:
        """The first process call that succeeded and started at or after ``moment``."""
        found = [c for c in self.calls if c.op == "process" and c.status == 200 and c.started >= moment]
        return min(found, key=lambda c: c.started) if found else None


@dataclass(frozen=True)
class Window:
    """What one fault window saw (docs/reliability.md's figures)."""

    name: str
    calls: int
    unavailable: int          # 503s
    ok: int
    max_latency_s: float
    recovered_after_s: float | None  # from the fault's end to the first successful payment
    other: dict[str, int]
    bad: list[str]            # answers a fault may not cause (see Call.acceptable)

    def line(self) -> str:
        recovered = "-" if self.recovered_after_s is None else f"{self.recovered_after_s:.2f}s"
        return (f"{self.name}: {self.calls} calls, {self.ok} 2xx, {self.unavailable} 503, "
                f"other {dict(self.other)}, max latency {self.max_latency_s:.2f}s, recovered in {recovered}"
                + (f", NOT ACCEPTABLE: {self.bad[:5]} ({len(self.bad)})" if self.bad else ""))


def summarize(load: PaymentLoad, name: str, start: float, end: float) -> Window:
    """The calls under way during the window."""
    calls = load.during(start, end)
    bad = [c.describe() for c in calls if not c.acceptable]
    first = load.succeeded_after(end)
    statuses = Counter(c.status for c in calls)
    other = Counter(f"{c.status} {c.code}" for c in calls if c.status not in (200, 201, 503))
    return Window(name, len(calls), statuses[503], statuses[200] + statuses[201],
                  max((c.seconds for c in calls), default=0.0),
                  None if first is None else first.started + first.seconds - end, dict(other), bad)


async def intents_of(base_url: str, creds: Credentials) -> list[dict[str, Any]]:
    """Every intent of the merchant, through the gateway's list endpoint."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S) as http:
        client = SignedClient(http, creds)
        after: str | None = None
        while True:
            query = "limit=100" + (f"&startingAfter={after}" if after else "")
            r = await client.get(f"/api/v1/payment/intents?{query}")
            assert r.status_code == 200, r.text
            page = r.json()
            found += page["data"]
            if not page["hasMore"]:
                return found
            after = page["data"][-1]["paymentIntentId"]


def approved_charges(simulator_url: str, merchant_id: str) -> Counter[str]:
    """Approved charges per intent in the processor's ledger."""
    r = httpx.get(f"{simulator_url}/v1/charges", params={"merchantId": merchant_id}, timeout=30)
    r.raise_for_status()
    return Counter(c["paymentIntentId"] for c in r.json()["data"] if c["status"] == "approved")


async def check_settled(base_url: str, simulator_url: str, load: PaymentLoad, *,
                        timeout: float = 60.0) -> dict[str, int]:
    """Once the reconciler has settled everything: nothing lost, nothing doubled, nothing
    left unknown. Returns the intents by status."""
    intents = await eventually(lambda: intents_of(base_url, load.creds),
                               until=lambda rows: all(r["status"] != "in_progress" for r in rows),
                               timeout=timeout, interval=0.5, what="every intent to be settled")
    status = {r["paymentIntentId"]: r["status"] for r in intents}
    assert load.intents <= status.keys(), "intents the clients created are missing"
    lost = {pid for pid in load.seen_succeeded if status.get(pid) != "succeeded"}
    assert not lost, f"acknowledged payments lost: {sorted(lost)}"
    charged = approved_charges(simulator_url, load.creds.merchant_id)
    doubled = {pid: n for pid, n in charged.items() if n > 1}
    assert not doubled, f"charged more than once: {doubled}"
    mismatched = {pid: (s, charged.get(pid, 0)) for pid, s in status.items()
                  if (s == "succeeded") != (charged.get(pid, 0) == 1)}
    assert not mismatched, f"gateway and processor disagree (status, approved charges): {mismatched}"
    unknown_at_gateway = set(charged) - status.keys()
    assert not unknown_at_gateway, f"charges for intents the gateway does not have: {unknown_at_gateway}"
    return dict(Counter(status.values()))
