"""Webhook delivery (SPEC §6, Standard Webhooks).

Every gateway worker (and ``paygate relay``) runs a dispatcher. It claims due deliveries
with a lease — a conditional update moving ``next_attempt_at`` past the attempt's timeout —
so two dispatchers never send the same delivery at once, and a dispatcher that dies
mid-attempt leaves the delivery to be retried when its lease runs out. An attempt's outcome
is recorded under its lease only: one that outlived it, the delivery claimed again since,
is dropped (logged) and the new attempt's outcome counts — at least once still, never a slot freed
under a running attempt. A delivery whose event or endpoint row cannot be loaded is
``failed`` at once (``event missing``, ``endpoint missing``), as one whose endpoint is
disabled or deleted: it could never be sent, and each lease would take a slot for nothing.

Each attempt POSTs the event's stored body with ``webhook-id`` (the event id, the same on
every attempt), ``webhook-timestamp`` and ``webhook-signature``; redirects are not followed
and the private-address guard runs inside the connection. Any 2xx within the timeout
(15 s) is delivered; ``410 Gone`` disables the endpoint (with the outcome, under the
attempt's lease: a late one disables nothing); anything else is retried after
the next step of ``PAYGATE_WEBHOOK_RETRY_SCHEDULE_S`` (±20 % jitter) until the schedule
runs out, and the delivery is then ``failed`` — ``paygate webhooks replay`` sends it again.

One slow or dead endpoint never delays the others: at most
``PAYGATE_WEBHOOK_ENDPOINT_CONCURRENCY`` attempts per endpoint run at once in the whole
gateway — every process and host on the database: the claim counts the endpoint's leases
still running, in its own transaction (storage/webhook_deliveries.py) — and its other due
deliveries wait in the table, not in front of anyone; at most
``PAYGATE_WEBHOOK_MAX_CONCURRENCY`` attempts run at once in a process.
"""
from __future__ import annotations

import asyncio
import logging
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import httpcore

from paygate_server.clock import now_us
from paygate_server.config import Settings
from paygate_server.crypto import MasterKey
from paygate_server.storage import Database
from paygate_server.storage.availability import log_failure
from paygate_server.storage.webhook_deliveries import DeliveryQueue, DueDelivery
from paygate_server.waiting import wait_event
from paygate_server.webhooks.guard import AddressRefused, GuardedBackend
from paygate_server.webhooks.model import open_secret, sign

__all__ = ["Dispatcher", "AttemptResult", "Claim", "ascii_url", "describe_failure"]

log = logging.getLogger("paygate.webhooks")
_US = 1_000_000
JITTER = (0.8, 1.2)
USER_AGENT = b"paygate-webhooks/1"


class AttemptResult(NamedTuple):
    status_code: int | None
    error: str | None


class Claim(NamedTuple):
    """A delivery this dispatcher won, and the lease it won it under (its outcome's fence)."""
    event_id: str
    endpoint_id: str
    lease_until: int


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def ascii_url(url: str) -> str:
    """The URL as sent: httpcore takes ASCII only, and a merchant's URL may have an
    internationalized host (sent as IDNA, the form Python's resolver looked up at
    registration) or UTF-8 in its path or query (percent-encoded, as browsers send it).
    UnicodeError if the host has no IDNA form."""
    if url.isascii():
        return url
    parts = urlsplit(url)
    host = (parts.hostname or "").encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, _percent_encoded(parts.path), _percent_encoded(parts.query),
                       parts.fragment))


def _percent_encoded(text: str) -> str:
    """Only the non-ASCII characters, as UTF-8 (the rest of the merchant's URL is theirs)."""
    return _NON_ASCII.sub(lambda m: quote(m.group()), text)


def describe_failure(exc: BaseException) -> str:
    """``Kind: what happened`` for an attempt's recorded error. The words come from the first
    exception down the chain that has any: httpcore's network errors wrap anyio's, whose
    messages are empty (a reset read as a bare ``ReadError:``)."""
    cause: BaseException | None = exc
    for _ in range(4):
        if cause is None or str(cause):
            break
        cause = cause.__cause__ or cause.__context__
    detail = str(cause)[:200] if cause is not None and str(cause) else "the connection ended"
    return f"{exc.__class__.__name__}: {detail}"


class Dispatcher:
    def __init__(self, db: Database, master: MasterKey, settings: Settings) -> None:
        self._queue = DeliveryQueue(db)
        self._master = master
        self._settings = settings
        self._lease_s = settings.webhook_timeout_s + 15.0
        self._pool: httpcore.AsyncConnectionPool | None = None  # made at the first attempt
        # In the order they started (a dict, not a set): cancelled in that order too, the
        # same from run to run (the deterministic simulation relies on it).
        self._tasks: dict[asyncio.Task[None], None] = {}
        self._in_flight: Counter[str] = Counter()
        self._wake = asyncio.Event()
        self.attempts = 0

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        try:
            while True:
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception:
                    log_failure(log, "webhook dispatch pass failed")
                await wait_event(self._wake, self._settings.webhook_poll_interval_s)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim what is due (within the concurrency limits) and start the attempts."""
        started = 0
        per_endpoint = self._settings.webhook_endpoint_concurrency
        for _ in range(4):  # re-query when a busy endpoint's rows crowded out the others
            free = self._settings.webhook_max_concurrency - len(self._tasks)
            if free <= 0:
                break
            # Endpoints this process alone keeps busy, and (in the query) those the gateway's
            # processes together do, are left out: their rows would fill the page.
            busy = [e for e, n in self._in_flight.items() if n >= per_endpoint]
            rows = await self._queue.due(now_us(), free * 2, skip_endpoints=busy, full_at=per_endpoint)
            if not rows:
                break
            claimed = await self._claim(rows, free, per_endpoint)
            for claim in claimed:
                self._start(claim)
            started += len(claimed)
            if len(rows) < free * 2:
                break
        return started

    async def send_due(self) -> int:
        """One pass (:meth:`run_once`) and the attempts it started, to their end: for a caller
        that drives the dispatcher itself rather than running it (the simulation)."""
        started = await self.run_once()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return started

    async def _claim(self, rows: Sequence[DueDelivery], free: int, per_endpoint: int) -> list[Claim]:
        taken: list[Claim] = []
        counts = Counter(self._in_flight)
        now = now_us()
        lease_until = now + int(self._lease_s * _US)
        # The process's own count first (no claim tried for an endpoint it keeps busy by
        # itself); the database's, every process's, in the claim.
        endpoint_ids = {row.endpoint_id for row in rows if counts[row.endpoint_id] < per_endpoint}
        async with self._queue.claiming(now, lease_until, endpoint_ids=endpoint_ids,
                                        per_endpoint=per_endpoint) as claim:
            for row in rows:
                if len(taken) >= free or counts[row.endpoint_id] >= per_endpoint:
                    continue
                if await claim(row):
                    taken.append(Claim(row.event_id, row.endpoint_id, lease_until))
                    counts[row.endpoint_id] += 1
        return taken

    def _start(self, claim: Claim) -> None:
        endpoint_id = claim.endpoint_id
        self._in_flight[endpoint_id] += 1
        task = asyncio.create_task(self._deliver(claim), name=f"webhook-{claim.event_id}")
        self._tasks[task] = None

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.pop(t, None)
            self._in_flight[endpoint_id] -= 1
            if self._in_flight[endpoint_id] <= 0:
                del self._in_flight[endpoint_id]
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _deliver(self, claim: Claim) -> None:
        event_id, endpoint_id = claim.event_id, claim.endpoint_id
        try:
            target = await self._queue.target(event_id, endpoint_id)
            if target is None:  # the delivery's own row: nothing to record anything on
                return
            if target.missing is not None or target.endpoint_status != "enabled":
                # Never to be sent: finished now, its slot free, rather than left to its lease
                # and claimed again at every lease's end, for ever.
                why = f"{target.missing} missing" if target.missing else f"endpoint {target.endpoint_status}"
                await self._finish(claim, "failed", target.attempts, None, why)
                return
            try:
                secret = open_secret(self._master, target.endpoint_id, target.secret_sealed)
                result = await self.attempt(target.url, secret, event_id, target.payload.encode())
            except Exception as exc:  # noqa: BLE001 - the gateway's own failure, recorded below
                # Not the endpoint's doing (a secret the master key cannot open, a bug): an
                # attempt that sent nothing, recorded like one, so that it backs off on the
                # schedule and ends `failed` for the operator to see and replay — left to the
                # lease, it came back every lease, a traceback each time, for ever.
                log.exception("webhook delivery %s -> %s not sent", event_id, endpoint_id)
                result = AttemptResult(None, f"not sent: {type(exc).__name__} in the gateway")
            self.attempts += 1
            await self._record(claim, target.attempts + 1, result)
        except Exception:
            # Reading or recording failed (the database): the lease runs out and the delivery
            # is retried; nothing is lost.
            log_failure(log, "webhook delivery %s -> %s failed unexpectedly", event_id, endpoint_id)

    def _connections(self) -> httpcore.AsyncConnectionPool:
        # Made when first needed: loading the system's CA certificates costs milliseconds that
        # a worker which never sends (or the simulation, whose attempts go nowhere) should not pay.
        if self._pool is None:
            self._pool = httpcore.AsyncConnectionPool(
                ssl_context=ssl.create_default_context(), max_connections=self._settings.webhook_max_concurrency,
                keepalive_expiry=30.0,
                network_backend=GuardedBackend(allow_private=self._settings.webhook_allow_private))
        return self._pool

    async def attempt(self, url: str, secret: str, event_id: str, body: bytes) -> AttemptResult:
        """One signed POST of an event's body; what the endpoint answered, or why nothing did.
        The delivery's network step alone (the simulation puts its merchant here)."""
        timestamp = int(time.time())
        headers = [
            (b"content-type", b"application/json"), (b"user-agent", USER_AGENT),
            (b"webhook-id", event_id.encode()), (b"webhook-timestamp", str(timestamp).encode()),
            (b"webhook-signature", sign(secret, event_id, timestamp, body).encode()),
        ]
        budget = self._settings.webhook_timeout_s
        extensions = {"timeout": {"connect": budget, "read": budget, "write": budget, "pool": budget}}
        try:
            url = ascii_url(url)
        except UnicodeError:
            return AttemptResult(None, "the URL's host name has no IDNA form")
        try:
            async with asyncio.timeout(budget):
                async with self._connections().stream("POST", url, headers=headers, content=body,
                                             extensions=extensions) as response:
                    return AttemptResult(response.status, None)
        except AddressRefused as exc:
            return AttemptResult(None, str(exc))
        except TimeoutError:
            return AttemptResult(None, f"no answer within {budget:g} s")
        except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
            return AttemptResult(None, describe_failure(exc))

    def next_delay_s(self, attempts: int) -> float | None:
        """Seconds until the retry after ``attempts`` attempts, or None when they are spent."""
        schedule = self._settings.webhook_retry_schedule_s
        if attempts > len(schedule):
            return None
        return schedule[attempts - 1] * random.uniform(*JITTER)

    async def _record(self, claim: Claim, attempts: int, result: AttemptResult) -> None:
        code = result.status_code
        if code is not None and 200 <= code < 300:
            await self._finish(claim, "delivered", attempts, code, None)
        elif code == 410:
            # The endpoint said it is gone: disabled with the outcome, under its lease — an
            # attempt that outlived its lease has no side effect (the later attempt's outcome
            # is the delivery's, and it may have been delivered).
            await self._finish(claim, "failed", attempts, code, "410 Gone: endpoint disabled",
                               disable_endpoint="the endpoint answered 410 Gone")
        else:
            error = result.error or f"HTTP {code}"
            delay = self.next_delay_s(attempts)
            if delay is None:
                await self._finish(claim, "failed", attempts, code, error)
            else:
                await self._finish(claim, "pending", attempts, code, error, next_at=now_us() + int(delay * _US))

    async def _finish(self, claim: Claim, status: str, attempts: int, code: int | None,
                      error: str | None, *, next_at: int | None = None, disable_endpoint: str | None = None) -> None:
        if not await self._queue.finish(claim.event_id, claim.endpoint_id, lease_until=claim.lease_until,
                                        status=status, attempts=attempts, status_code=code, error=error,
                                        now=now_us(), next_at=next_at, disable_endpoint=disable_endpoint):
            # Its lease ran out and the delivery was claimed again (or finished already): that
            # attempt records its own outcome, sending again if it must (at least once); this
            # one, recorded, would free the other's slot while it runs and overwrite its count.
            log.info("webhook delivery %s -> %s: outcome (%s) not recorded, the delivery is no longer under"
                     " this attempt's lease (it ran out and the delivery was claimed again)",
                     claim.event_id, claim.endpoint_id, status)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pool is not None:
            await self._pool.aclose()
