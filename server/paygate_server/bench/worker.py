"""One load-generator process: an asyncio loop (uvloop when installed) driving the gateway.

The parent starts ``procs`` of these (multiprocessing, spawn), sends each the start of the
measured window, and merges what they send back. A worker records a request only if it
*started* inside the window and (for a duration-bounded run) *finished* before its end, so
warm-up and drain traffic never reach the numbers.
"""
from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from paygate._signing import compute_signature, format_timestamp
from paygate_server.bench.scenarios import SCENARIOS
from paygate_server.bench.stats import LatencyHistogram
from paygate_server.http1client import ConnectionPool, HttpConnection, HttpError, Response
from paygate_server.intents.schemas import OUTCOME_STATUSES

__all__ = ["SCENARIOS", "Recorder", "Signer", "WorkerConfig", "worker_main"]

# Where a manual-capture payment's first half ends (then the flow captures it).
HELD = "requires_capture"
PRODUCT = {"sku": "bench-01", "name": "Benchmark mug"}
PROGRESS_EVERY_S = 0.5
_JSON_ONLY = b"Content-Type: application/json\r\n"

Send = Callable[[str, str, bytes, bytes, float], Awaitable[Response]]  # method, target, headers, body, timeout


@dataclass
class WorkerConfig:
    index: int
    scenario: str
    host: str
    port: int
    merchants: list[dict[str, str]]
    jwes: list[str]
    concurrency: int = 0  # closed loop: virtual users in this process
    rate: float = 0.0  # open loop: flows per second started by this process
    max_connections: int = 256
    max_in_flight: int = 10_000
    count: int | None = None  # measured flows for this process (None: duration-bounded)
    prepare: int = 0  # intents created before the window (status/process scenarios)
    amount: int = 1999
    currency: str = "USD"
    idempotency_keys: bool = True
    request_timeout_s: float = 30.0
    flow_timeout_s: float = 60.0
    status_wait_s: int = 5
    capture_method: str = "automatic"  # manual: the payment flow authorizes, then captures
    # The payment flow tokenizes at the checkout (POST /checkout/v1/tokens, as the hosted
    # form does: SPEC §10's create → tokenize → process); False: process takes the JWE itself
    # (the SDK's server-side encryption, SPEC §5), one request fewer.
    tokenize: bool = True


class Signer:
    """SPEC §3 headers for one merchant, with the timestamp string cached per second."""

    def __init__(self, creds: dict[str, str], idempotency_keys: bool) -> None:
        self.merchant_id = creds["merchantId"]
        self._secret = creds["signingSecret"]
        self._auth = f"Authorization: Bearer {creds['apiKey']}\r\nContent-Type: application/json\r\n".encode()
        self._idempotency = idempotency_keys
        self._ts_second = -1
        self._ts = ""

    def headers(self, method: str, target: str, body: bytes) -> bytes:
        second = int(time.time())
        if second != self._ts_second:
            self._ts_second, self._ts = second, format_timestamp()
        nonce = os.urandom(16).hex()
        signature = compute_signature(self._secret, method, target, self._ts, nonce, body)
        # URL-safe base64, not hex: a key is the merchant's free text, so one holding a long
        # run of digits could pass for a card number in a load test's logs.
        extra = f"Idempotency-Key: bench_{secrets.token_urlsafe(12)}\r\n" if self._idempotency and method == "POST" else ""
        return self._auth + (
            f"X-Request-Timestamp: {self._ts}\r\nX-Request-Nonce: {nonce}\r\n"
            f"X-Signature: {signature}\r\n{extra}"
        ).encode("ascii")


@dataclass
class Recorder:
    """Per-endpoint latencies, errors and outcomes inside the measured window."""

    window_start: float = float("inf")
    window_end: float | None = None
    histograms: defaultdict[str, LatencyHistogram] = field(default_factory=lambda: defaultdict(LatencyHistogram))
    errors: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    payments: int = 0  # flows that reached their goal inside the window
    failed_flows: int = 0
    error_count: int = 0
    last_completion: float = 0.0

    def in_window(self, started: float, ended: float) -> bool:
        return started >= self.window_start and (self.window_end is None or ended <= self.window_end)

    def request(self, endpoint: str, started: float, ended: float, error: str | None) -> None:
        if not self.in_window(started, ended):
            return
        self.requests += 1
        self.histograms[endpoint].record(ended - started)
        if error is not None:
            self.errors[f"{endpoint}: {error}"] += 1
            self.error_count += 1

    def flow(self, name: str | None, started: float, ended: float, outcome: str | None) -> None:
        """A finished flow: ``outcome`` is its final status, or None if it broke off. ``name``:
        the histogram of whole-flow latency, or None when the flow is a single request (its
        latency is already the endpoint's, and recording it twice doubles the count)."""
        if not self.in_window(started, ended):
            return
        if outcome is None:
            self.failed_flows += 1
            return
        self.payments += 1
        self.last_completion = max(self.last_completion, ended)
        self.outcomes[outcome] += 1
        if name is not None:
            self.histograms[name].record(ended - started)


def _error_of(response: Response) -> str:
    try:
        code = orjson.loads(response.body)["error"]["code"]
    except Exception:  # noqa: BLE001 - not our error shape
        code = "unparseable"
    return f"HTTP {response.status} {code}"


class Driver:
    def __init__(self, cfg: WorkerConfig, recorder: Recorder) -> None:
        self.cfg = cfg
        self.rec = recorder
        self.signers = [Signer(m, cfg.idempotency_keys) for m in cfg.merchants]
        self.flows_started = 0  # measured flows started (for count-bounded runs)
        self.seq = 0
        self.prepared: list[tuple[Signer, str]] = []
        self.exhausted = False
        self.dropped = 0
        self.stop_at: float | None = None
        self.flow = self.payment_flow if cfg.scenario == "payment" else self.single_flow

    # -- one request -------------------------------------------------------------------

    async def call(self, send: Send, signer: Signer | None, endpoint: str, method: str, target: str,
                   body: bytes, expect: int) -> dict[str, Any] | None:
        """One request; ``signer`` None: an unsigned one (the checkout's, authenticated by
        the clientSecret in its body)."""
        headers = _JSON_ONLY if signer is None else signer.headers(method, target, body)
        started = time.monotonic()
        try:
            response = await send(method, target, headers, body, self.cfg.request_timeout_s)
        except HttpError as exc:
            self.rec.request(endpoint, started, time.monotonic(), f"transport {exc}")
            return None
        ended = time.monotonic()
        if response.status != expect:
            self.rec.request(endpoint, started, ended, _error_of(response))
            return None
        self.rec.request(endpoint, started, ended, None)
        try:
            data = orjson.loads(response.body)
        except orjson.JSONDecodeError:
            self.rec.request(endpoint, started, ended, "unparseable body")
            return None
        return data if isinstance(data, dict) else None

    def _create_body(self) -> bytes:
        body: dict[str, Any] = {"amount": self.cfg.amount, "currency": self.cfg.currency, "productDetails": PRODUCT}
        if self.cfg.capture_method != "automatic":
            body["captureMethod"] = self.cfg.capture_method
        return orjson.dumps(body)

    def _next_jwe(self) -> str:
        self.seq += 1
        return self.cfg.jwes[self.seq % len(self.cfg.jwes)]

    async def create(self, send: Send, signer: Signer) -> str | None:
        data = await self.create_intent(send, signer)
        return None if data is None else data.get("paymentIntentId")

    async def create_intent(self, send: Send, signer: Signer) -> dict[str, Any] | None:
        return await self.call(send, signer, "create", "POST", "/api/v1/payment/intent", self._create_body(), 201)

    async def tokenize(self, send: Send, client_secret: str) -> str | None:
        """The hosted form's step: the encrypted card for a single-use token (SPEC §5)."""
        body = orjson.dumps({"clientSecret": client_secret, "encryptedCard": self._next_jwe()})
        data = await self.call(send, None, "tokenize", "POST", "/checkout/v1/tokens", body, 200)
        return None if data is None else data.get("token")

    async def process(self, send: Send, signer: Signer, intent_id: str, token: str | None = None) -> str | None:
        card = {"token": token} if token is not None else {"encryptedCard": self._next_jwe()}
        body = orjson.dumps({"paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": card})
        data = await self.call(send, signer, "process", "POST", "/api/v1/payment/process", body, 200)
        return None if data is None else data.get("status")

    async def capture(self, send: Send, signer: Signer, intent_id: str) -> str | None:
        body = orjson.dumps({"paymentIntentId": intent_id})
        data = await self.call(send, signer, "capture", "POST", "/api/v1/payment/capture", body, 200)
        return None if data is None else data.get("status")

    async def status(self, send: Send, signer: Signer, intent_id: str, wait: int) -> str | None:
        target = f"/api/v1/payment/status?paymentIntentId={intent_id}"
        endpoint = "status"
        if wait:
            target += f"&wait={wait}"
            endpoint = "status_wait"  # long-polls hold on purpose: kept apart from quick reads
        data = await self.call(send, signer, endpoint, "GET", target, b"", 200)
        return None if data is None else data.get("status")

    # -- flows ---------------------------------------------------------------------------

    async def payment_flow(self, send: Send, signer: Signer, started: float) -> None:
        """create → tokenize (unless ``tokenize`` is off: process takes the encryptedCard) →
        process → status until final (at least one read); with manual capture: → status
        until requires_capture → capture → status until final."""
        outcome: str | None = None
        created = await self.create_intent(send, signer)
        intent_id = None if created is None else created.get("paymentIntentId")
        token = None
        if intent_id is not None and self.cfg.tokenize:
            token = await self.tokenize(send, str(created.get("clientSecret") if created else ""))
            if token is None:
                intent_id = None  # the error is recorded; the flow broke off
        if intent_id is not None:
            # A payment's flow ends at its attempt's outcome, a decline included.
            stop = OUTCOME_STATUSES | {HELD} if self.cfg.capture_method == "manual" else OUTCOME_STATUSES
            outcome = await self._until(send, signer, intent_id, await self.process(send, signer, intent_id, token),
                                        stop, started)
            if outcome == HELD:
                outcome = await self._until(send, signer, intent_id, await self.capture(send, signer, intent_id),
                                            OUTCOME_STATUSES, started)
        self.rec.flow("payment", started, time.monotonic(), outcome)

    async def _until(self, send: Send, signer: Signer, intent_id: str, status: str | None,
                     stop: frozenset[str], started: float) -> str | None:
        """Status reads (at least one) until one of ``stop``; None on an error or the flow's timeout."""
        while status is not None:
            wait = 0 if status in stop else self.cfg.status_wait_s
            status = await self.status(send, signer, intent_id, wait)
            if status in stop:
                return status
            if time.monotonic() > started + self.cfg.flow_timeout_s:
                self.rec.request("payment", started, time.monotonic(), "flow timeout (not final)")
                return None
        return None

    async def single_flow(self, send: Send, signer: Signer, started: float) -> None:
        scenario = self.cfg.scenario
        outcome: str | None = None
        if scenario == "create":
            outcome = "created" if await self.create(send, signer) is not None else None
        else:
            if not self.prepared:
                self.exhausted = True
                return
            if scenario == "status":
                signer, intent_id = self.prepared[self.seq % len(self.prepared)]
                self.seq += 1
                outcome = await self.status(send, signer, intent_id, 0)
            else:  # process: each prepared intent once
                signer, intent_id = self.prepared.pop()
                outcome = await self.process(send, signer, intent_id)
        self.rec.flow(None, started, time.monotonic(), outcome)

    def may_start(self, now: float) -> bool:
        """Whether another flow may start now; counts measured starts."""
        if self.stop_at is not None and now >= self.stop_at:
            return False
        if self.exhausted:
            return False
        if now >= self.rec.window_start:
            if self.cfg.count is not None and self.flows_started >= self.cfg.count:
                return False
            self.flows_started += 1
        return True

    # -- preparation and loops -----------------------------------------------------------

    async def prepare(self) -> None:
        """Intents for the status/process scenarios, made before anything is measured."""
        if self.cfg.scenario not in ("status", "process") or self.cfg.prepare <= 0:
            return
        conn = HttpConnection(self.cfg.host, self.cfg.port)
        for i in range(self.cfg.prepare):
            signer = self.signers[i % len(self.signers)]
            intent_id = await self.create(conn.request, signer)
            if intent_id is None:
                raise RuntimeError(f"could not create intents to prepare: {self.rec.errors}")
            self.prepared.append((signer, intent_id))
        conn.close()

    async def closed_loop(self) -> None:
        async def user(u: int) -> None:
            conn = HttpConnection(self.cfg.host, self.cfg.port)
            signer = self.signers[(self.cfg.index * self.cfg.concurrency + u) % len(self.signers)]
            try:
                while self.may_start(now := time.monotonic()):
                    await self.flow(conn.request, signer, now)
            finally:
                conn.close()

        await asyncio.gather(*(user(u) for u in range(self.cfg.concurrency)))

    async def open_loop(self) -> None:
        pool = ConnectionPool(self.cfg.host, self.cfg.port, self.cfg.max_connections)
        in_flight: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.cfg.rate
        next_at = time.monotonic()
        n = 0
        try:
            while True:
                now = time.monotonic()
                stop = False
                while next_at <= now:
                    if not self.may_start(next_at):
                        stop = True
                        break
                    if len(in_flight) >= self.cfg.max_in_flight:
                        self.dropped += 1  # the gateway fell this far behind: shed, and say so
                    else:
                        # Latency counts from the *intended* start (no coordinated omission).
                        signer = self.signers[n % len(self.signers)]
                        task = asyncio.create_task(self.flow(pool.request, signer, next_at))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    n += 1
                    next_at += interval
                if stop:
                    break
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if in_flight:
                await asyncio.wait(set(in_flight), timeout=self.cfg.flow_timeout_s)
        finally:
            pool.close()


async def _progress(driver: Driver, queue: Any) -> None:
    rec = driver.rec
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        queue.put(("progress", driver.cfg.index, rec.payments, rec.requests, rec.error_count))


async def _run(cfg: WorkerConfig, queue: Any, control: Any) -> None:
    rec = Recorder()
    driver = Driver(cfg, rec)
    await driver.prepare()
    queue.put(("ready", cfg.index, len(driver.prepared)))
    loop = asyncio.get_running_loop()
    # The parent answers with the window: (start, end or None, stop starting flows at).
    window_start, window_end, stop_at = await loop.run_in_executor(None, control.recv)
    rec.window_start, rec.window_end, driver.stop_at = window_start, window_end, stop_at
    reporter = asyncio.create_task(_progress(driver, queue))
    try:
        if cfg.rate > 0:
            await driver.open_loop()
        else:
            await driver.closed_loop()
    finally:
        reporter.cancel()
    queue.put(("result", cfg.index, {
        "histograms": {name: h.to_wire() for name, h in rec.histograms.items()},
        "errors": dict(rec.errors), "outcomes": dict(rec.outcomes), "requests": rec.requests,
        "payments": rec.payments, "failed_flows": rec.failed_flows,
        "last_completion": rec.last_completion, "dropped": driver.dropped,
        "exhausted": driver.exhausted, "prepared": cfg.prepare,
    }))


def worker_main(cfg: WorkerConfig, queue: Any, control: Any) -> None:
    """Process entry point (multiprocessing, spawn)."""
    try:
        import uvloop  # optional: a faster loop keeps the generator's own cost down

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_run(cfg, queue, control))
    except BaseException as exc:
        queue.put(("failed", cfg.index, f"{type(exc).__name__}: {exc}"))
        raise
