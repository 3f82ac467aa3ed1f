"""Readiness (``GET /readyz``): can this process serve requests that need the database?

``/healthz`` is liveness: it answers while a worker serves and never looks further, so a
host cut from PostgreSQL stays "healthy" and a load balancer keeps sending it requests it
can only answer ``503``. ``/readyz`` answers ``200`` only when a trivial query went through
lately (storage/ping.py), else ``503 service_unavailable`` with ``Retry-After``: point the
load balancer's check at it and such a host leaves rotation (docs/operations.md, "Health
checks").

A load balancer calls it every second or two, from each of its processes, so one check
must stay cheap and short whatever the database does:

* **bounded** — an answer within ``timeout_s`` of the probe's start, whatever the database
  does: the probe runs as a task of its own, and a check that has waited that long answers
  "not ready" and leaves the probe to finish (or time out) by itself;
* **one probe at a time** — checks arriving while a probe runs wait for that probe: a burst
  of checks costs one query, and a database that does not answer holds at most one pooled
  connection of ours for it;
* **cached** — an outcome stands for ``cache_s``; the next check after that probes again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.responses import Response

from paygate_server.errors import ApiError
from paygate_server.http.api import error_response, json_response
from paygate_server.storage.availability import RETRY_AFTER_S

__all__ = ["NOT_READY", "Readiness", "readiness_response"]

log = logging.getLogger("paygate.readiness")

NOT_READY = "the service cannot reach its database; retry later"
# Checks must see the database as it is, not as a cache between them saw it.
_NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """Whether the database answered lately, as :meth:`check` sees it."""

    def __init__(self, probe: Callable[[], Awaitable[None]], *, timeout_s: float, cache_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe_once = probe  # raises when the database did not answer
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._clock = clock
        self._ready: bool | None = None  # the last outcome; None before the first
        self._known_at = 0.0
        self._task: asyncio.Task[bool] | None = None
        self._deadline = 0.0

    async def check(self) -> bool:
        """Ready or not, within ``timeout_s``; never raises (but for cancellation)."""
        now = self._clock()
        if self._ready is not None and now - self._known_at < self.cache_s:
            return self._ready
        task = self._task
        if task is None:  # no probe running: start one (a probe past its bound still counts)
            self._deadline = now + self.timeout_s
            task = self._task = asyncio.create_task(self._probe(), name="readiness probe")
        remaining = self._deadline - now
        if remaining > 0:
            # asyncio.wait, not wait_for: a check that gives up must not cancel the probe
            # others wait for (nor leave it cancelled half-way through a statement).
            await asyncio.wait((task,), timeout=remaining)
        if task.done():
            return task.result()
        # Past its bound and still running: not ready. The probe that is still running is
        # the only one (no other starts until it ends), so a database that stopped answering
        # never piles probes up on the pool.
        self._settle(False, f"no answer within {self.timeout_s:g}s")
        return False

    async def _probe(self) -> bool:
        try:
            await self._probe_once()
        except Exception as exc:  # any failure of SELECT 1 means "do not send me requests"
            # The exception's class only: a driver's message may carry the server's address.
            ready, why = False, type(exc).__name__
        else:
            ready, why = True, ""
        finally:
            self._task = None
        self._settle(ready, why)
        return ready

    def _settle(self, ready: bool, why: str) -> None:
        # One line per change, not one per check (a load balancer checks every second).
        if ready and self._ready is False:
            log.warning("ready: the database answers again")
        elif not ready and self._ready is not False:
            log.warning("not ready: the database did not answer (%s)", why)
        self._ready, self._known_at = ready, self._clock()

    async def close(self) -> None:
        """Stop a probe still running (the app is shutting down, its database with it)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def readiness_response(readiness: Readiness, request_id: str) -> Response:
    """``200 {"status": "ready"}``, or ``503 service_unavailable`` with ``Retry-After``."""
    if await readiness.check():
        return json_response(200, {"status": "ready"}, _NO_STORE)
    return error_response(ApiError("service_unavailable", NOT_READY,
                                   headers={"Retry-After": str(RETRY_AFTER_S), **_NO_STORE}), request_id)
