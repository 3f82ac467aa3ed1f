"""The merchant's API client: every planned operation is a POST with an ``Idempotency-Key``
of its own, handled by the gateway's real endpoint code (``ApiContext.idempotently``, the
answers stored with the key, their replays, 409 and the abandoned claims) — and sent again
with the **same** key when it got no answer.

A client that got no answer (the gateway crashed; its own timeout ran out) or a 5xx cannot
tell whether its request ran, so it sends it again with the same key, and after ``409
idempotency_request_in_progress`` later again. Here, from the client's own seeded source:

- a request cut off by a crash is sent again soon after the restart (within the lock
  timeout: a claim whose first phase committed answers 409), or once the lock timeout has
  passed (the claim is abandoned: answered with what the first request began), or given up;
- in some seeds the client stops waiting after :data:`CLIENT_TIMEOUTS_S` (a payment on a
  slow processor), the request going on in the gateway;
- a 409 in progress, a 5xx or no answer is retried soon or after the lock timeout, at most
  :data:`MAX_SENDS` sends in all.

Each key's :class:`KeyRecord` keeps what its requests began at the store (the store's
``begin_*``/``reserve_refund`` are watched; a context variable carried by the request's task
names the key) and every answer the gateway gave under it, for
:func:`~.invariants.check_keys`. Times are the simulation's virtual clock: no real waits.
"""
from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from paygate_server import jsoncodec
from paygate_server.cards.resolved import ResolvedCard
from paygate_server.clock import now_us
from paygate_server.errors import ApiError
from paygate_server.http.api import ApiContext, IdempotencyScope, Replayed, error_response
from paygate_server.processing.connectors import CardDetails
from paygate_server.processing.endpoints import (
    answer_processed,
    cancel_intent,
    capture_payment,
    process_payment,
)
from paygate_server.processing.service import ProcessPayment
from paygate_server.refunds.endpoints import create_refund
from paygate_server.state import Gateway
from paygate_server.storage.port import ExistingKey

__all__ = ["CARD", "MAX_SENDS", "Answer", "Client", "KeyRecord", "Op"]

CARD = ResolvedCard(CardDetails("4242424242424242", 12, 2030, "123"),
                    {"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2030}, None)
MAX_SENDS = 4  # a request, and up to three retries with its key
CLIENT_TIMEOUTS_S = (None, None, 3.0)  # the client's own read timeout (None: it waits)
# What the client does with a request that got no answer (or a 5xx, or 409 in progress):
# its weights for sending it again soon, after the lock timeout, or giving up.
AFTER_CUT_OFF = (("soon", 0.4), ("late", 0.35), ("give_up", 0.25))
AFTER_NO_ANSWER = (("soon", 0.5), ("late", 0.5))
_PATHS = {"process": "/api/v1/payment/process", "capture": "/api/v1/payment/capture",
          "cancel": "/api/v1/payment/cancel", "refund": "/api/v1/payment/refund"}
# What a request's first phase begins at the store, by the store's method.
_BEGINS = {"begin_attempt": "charge", "begin_capture": "capture", "begin_void": "void", "reserve_refund": "refund"}
# What each kind of request begins at the store (its first phase), as _BEGINS names it.
_BEGUN_BY = {"process": "charge", "capture": "capture", "cancel": "void", "refund": "refund"}


@dataclass
class Answer:
    at: float  # virtual time
    send: int  # which send of the key (1: the first)
    status: int
    code: str | None  # an error's code
    about: str | None  # a 200's object: the refund's id, or the intent's
    sent_us: int = 0  # when its request was sent (the gateway's clock, as the key's lock time)


@dataclass
class KeyRecord:
    key: str
    intent_id: str
    begun: list[tuple[str, str]] = field(default_factory=list)  # (kind, intent or refund id), in order
    # When the first operation was begun (the gateway's clock, µs): its claim was taken then
    # or before, so a send past it by more than the lock timeout finds the claim abandoned.
    begun_us: int | None = None
    answers: list[Answer] = field(default_factory=list)


@dataclass
class Op:
    """A client's request, planned; sent again with its key after no answer."""

    number: int
    at: float
    intent: int
    kind: str  # process | capture | cancel | refund
    amount: int | None = None
    by_token: bool = False  # a process paying with the intent's vault token, not a card
    token: str | None = None  # that token, once the intent has one
    state: str = "planned"  # planned | sent | answered | abandoned
    sends: int = 0
    record: KeyRecord | None = None  # once first sent

    @property
    def key(self) -> str:
        return f"sim-op-{self.number}"


REQUEST_KEY: ContextVar[KeyRecord | None] = ContextVar("simulated_request_key", default=None)


def watch(store: Any) -> None:
    """Record, on the key of the request whose task makes the call, what each of the
    store's first phases began (the reconciler's calls carry no key)."""
    for name, kind in _BEGINS.items():
        setattr(store, name, _watched(getattr(store, name), kind))


def _watched(real: Callable[..., Awaitable[Any]], kind: str) -> Callable[..., Awaitable[Any]]:
    async def begin(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        record = REQUEST_KEY.get()
        if record is not None and not isinstance(result, ExistingKey):
            record.begun.append((kind, result["id"] if kind == "refund" else result[1].intent_id))
            record.begun_us = now_us() if record.begun_us is None else record.begun_us
        return result
    return begin


class Client:
    def __init__(self, rng: random.Random, merchant_id: str, lock_timeout_s: float,
                 log: Callable[[str], None], violations: list[str]) -> None:
        self.rng = rng
        self.merchant_id = merchant_id
        self.lock_timeout_s = lock_timeout_s
        self.timeout_s = rng.choice(CLIENT_TIMEOUTS_S)
        self.log = log
        self.violations = violations
        self.records: list[KeyRecord] = []
        self.unfinished: set[asyncio.Task[Answer]] = set()  # sends the client stopped waiting for
        self._requests = 0

    def _retry(self, op: Op, now: float, choices: tuple[tuple[str, float], ...]) -> None:
        """Plan ``op``'s next send (soon, or past the lock timeout), or give it up."""
        how = self.rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if how == "give_up" or op.sends >= MAX_SENDS:
            op.state = "abandoned"
            self.log(f"client gives op {op.number} up after {op.sends} send(s)")
            return
        op.state = "planned"
        op.at = now + (self.rng.uniform(0.5, 10.0) if how == "soon"
                       else self.lock_timeout_s + self.rng.uniform(1.0, 60.0))

    async def recover_begun(self, gateway: Gateway, ops: list[Op]) -> None:
        """After a crash, before any request is sent again: a request cut off after its
        first phase committed but before the store's call returned to it (the crash fell
        between the two) began something :func:`watch` never saw. Its key's row says so —
        still ``in_progress``: a claim commits only with the change it guards — and names
        the refund it began. Without this, :func:`~.invariants.check_keys` had nothing
        begun for that key and checked none of its answers, nor a second operation begun
        under it."""
        for op in ops:
            if op.record is None or op.record.begun:
                continue
            scope = IdempotencyScope(gateway, self.merchant_id, op.key, "POST", _PATHS[op.kind], b"")
            found = await gateway.payments.find_key(scope.claim)
            if found is not None and found.state == "in_progress":
                begun = found.resource_id if op.kind == "refund" else op.record.intent_id
                if begun is not None:
                    op.record.begun.append((_BEGUN_BY[op.kind], begun))
                    op.record.begun_us = found.locked_at
                    self.log(f"op {op.number} began {_BEGUN_BY[op.kind]} {begun} before the crash, unseen")

    def cut_off(self, op: Op, now: float) -> None:
        """A crash cut ``op`` off (``now``: when the gateway is back)."""
        if op.state == "sent":
            self._retry(op, now, AFTER_CUT_OFF)

    async def run(self, gateway: Gateway, op: Op, intent_id: str, now: Callable[[], float]) -> None:
        """Send ``op`` at its time, and again with its key until it is answered (or given up)."""
        while op.state == "planned":
            if (wait := op.at - now()) > 0:
                await asyncio.sleep(wait)
            if op.record is None:
                op.record = KeyRecord(op.key, intent_id)
                self.records.append(op.record)
            op.state, op.sends = "sent", op.sends + 1
            self.log(f"op {op.number} {op.kind} {intent_id} {op.amount} send {op.sends}")
            task = asyncio.create_task(self._send(gateway, op, op.record, intent_id, now))
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
            if not done:
                self.unfinished.add(task)
                self.log(f"op {op.number} -> no answer within {self.timeout_s:g} s")
                self._retry(op, now(), AFTER_NO_ANSWER)
                continue
            answer = task.result()
            self.log(f"op {op.number} -> {answer.status} {answer.code or answer.about}")
            if answer.status >= 500 or answer.code == "idempotency_request_in_progress":
                self._retry(op, now(), AFTER_NO_ANSWER)
            else:
                op.state = "answered"

    async def finish(self) -> None:
        """The requests the client stopped waiting for run to their end (the gateway's;
        a crashed process's are gone)."""
        loop = asyncio.get_running_loop()
        self.unfinished = {task for task in self.unfinished if task.get_loop() is loop}
        while self.unfinished:
            await asyncio.gather(*self.unfinished, return_exceptions=True)
            self.unfinished = {task for task in self.unfinished if not task.done()}

    async def _send(self, gateway: Gateway, op: Op, record: KeyRecord, intent_id: str,
                    now: Callable[[], float]) -> Answer:
        """One POST under ``op``'s key, through the endpoint's code (as ``api_endpoint``
        runs it once the request is authenticated)."""
        REQUEST_KEY.set(record)
        sent_us = now_us()
        body: dict[str, Any] = {"paymentIntentId": intent_id}
        if op.kind == "process":
            # A token goes through the endpoint's own token path (resolved, not consumed, then
            # a spent token's retry judged by a peek at the key); a card past its decryption.
            details = {"token": op.token} if op.by_token else {"encryptedCard": "sim"}
            body |= {"paymentMethod": "card", "paymentDetails": details}
        elif op.kind in ("capture", "refund") and op.amount is not None:
            body["amount"] = op.amount
        ctx = self._context(gateway, _PATHS[op.kind], body, op.key)
        handler = {"process": process_payment if op.by_token else _process, "capture": capture_payment,
                   "cancel": cancel_intent, "refund": create_refund}[op.kind]
        try:
            response = await handler(ctx)
        except Replayed as replayed:
            response = replayed.response
        except ApiError as exc:
            response = error_response(exc, ctx.request_id)
        except Exception as exc:  # noqa: BLE001 - what the server's error middleware answers
            self.violations.append(f"op {op.number}: internal error {exc!r}")
            response = Response(b'{"error": {"code": "internal_error"}}', 500)
        answer = _answer(now(), op.sends, response, sent_us)
        record.answers.append(answer)
        return answer

    def _context(self, gateway: Gateway, path: str, body: dict[str, Any], key: str) -> ApiContext:
        self._requests += 1
        raw = jsoncodec.dumps(body)
        request = Request({"type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
                           "query_string": b"", "headers": []})
        ctx = ApiContext(request, gateway, f"req_sim_{self._requests}", self.merchant_id, "sim", "POST", path, raw)
        ctx.idempotency = IdempotencyScope(gateway, self.merchant_id, key, "POST", path, raw)
        return ctx


async def _process(ctx: ApiContext) -> Response:
    """``process_payment`` past its card's decryption (the simulation's card is resolved)."""
    command = ProcessPayment(ctx.merchant_id, jsoncodec.loads(ctx.body)["paymentIntentId"], CARD)
    return await answer_processed(ctx, await ctx.idempotently(
        lambda claim: ctx.gateway.processing.process(command, claim)))


def _answer(at: float, send: int, response: Response, sent_us: int) -> Answer:
    told = jsoncodec.loads(bytes(response.body))
    if response.status_code >= 300:
        return Answer(at, send, response.status_code, told.get("error", {}).get("code"), None, sent_us)
    return Answer(at, send, response.status_code, None, told.get("refundId") or told.get("paymentIntentId"),
                  sent_us)
