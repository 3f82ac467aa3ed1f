"""One seed of the simulation: a plan drawn from the seed, run over the real services.

A seed decides everything: the intents (amount, automatic or manual capture), the clients'
operations and when they start (processing twice, capture against cancel, refunds racing
each other), how often the processor's network misbehaves, how many crashes and at which
turn of the event loop. Every process of the gateway (one per crash, plus one) runs on its
own :class:`~.loop.SimulatedLoop` over the database that the previous one left; the
processor's ledger, the merchant's webhook endpoint and the clients live outside, in the
world, as they would. Each process runs the real reconciler, and the real relay (with the
webhook consumer) and webhook dispatcher, as ``paygate serve`` does.

Some intents are paid with a vault token (their card stored at their creation, as the
hosted checkout does), through the process endpoint's token path; the rest with a card.

The clients (:mod:`.client`) send each operation with an ``Idempotency-Key`` of its own,
and again with that key when they got no answer (a crash, their own timeout), a 5xx or a
409 in progress — soon, or past the lock timeout.

After the clients are done the faults stop, the background work finishes, the real
reconciler is run until its queue is empty (the clock jumping to each next check), the
relay delivers every change and the dispatcher sends every event, and the invariants
(:mod:`.invariants`) are checked against the processor's ledger and what the merchant
received.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import random
import shutil
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from paygate_server import clock, ids, jsoncodec
from paygate_server.app import core_gateway
from paygate_server.cards import fingerprint
from paygate_server.cdc.relay import Relay
from paygate_server.config import Settings
from paygate_server.intents.schemas import CreateIntent
from paygate_server.intents.service import create_intent
from paygate_server.processors.notifications import apply_events
from paygate_server.simulation.client import CARD, Client, Op, watch
from paygate_server.simulation.invariants import (
    check_keys,
    check_quiescent,
    check_webhooks,
    gateway_view,
)
from paygate_server.simulation.loop import SimulatedCrash, SimulatedLoop, Stalled
from paygate_server.simulation.merchant import Merchant, SimulatedDispatcher
from paygate_server.simulation.notices import Notices
from paygate_server.simulation.processor import Faults, Ledger, SimulatedConnector
from paygate_server.simulation.template import Template
from paygate_server.state import Gateway
from paygate_server.storage import Database, create_database
from paygate_server.storage.port import ExistingKey
from paygate_server.storage.sqlite_copy import copy_committed, sqlite_url
from paygate_server.storage.webhook_deliveries import DeliveryQueue
from paygate_server.vault.service import VaultService
from paygate_server.webhooks import consumer_for

__all__ = ["SeedResult", "collect_garbage", "run_seed"]

EPOCH_US = 1_800_000_000 * 1_000_000  # the virtual clock's zero: 2027-01-15
MAX_RECONCILER_PASSES = 60
MAX_WORLD_WAITS = 10_000  # for what is still travelling, before a reconciler pass
CLIENT_WINDOW_S = 40.0
# The reconciler's safety-net sweep (5 s by default): every pass it makes is event-driven
# anyway, and each sweep costs statements that make a seed slower, not more searching.
SWEEP_INTERVAL_S = 20.0  # the clients' operations start within this much virtual time
# The relay and the dispatcher poll this often besides being woken by every commit and every
# new event (0.5 s and 1 s in production): each poll is a statement, and a seed spans
# virtual hours.
POLL_S = 60.0
# The webhook retry schedule: shorter than production's (which spans days), as many steps.
HOOK_RETRIES_S = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0)
MAX_DISPATCH_ROUNDS = 60
# The seeds that run the relay and the dispatcher (and check the webhooks): a seed with them
# costs about four times one without (some 30 statements per webhook attempt), and the
# payment core's faults are the bulk of the search.
WEBHOOK_SHARE = 0.25
NOTICE_SHARE = 0.5  # the seeds whose processor sends notifications
TOKEN_SHARE = 0.3  # the intents whose payments are made with a vault token (the checkout's)


@dataclass
class SeedResult:
    seed: int
    steps: int = 0  # client requests answered + reconciler passes
    faults: Counter[str] = field(default_factory=Counter)
    histories: int = 0  # intents whose history and state were checked
    events: int = 0  # webhook events checked
    violations: list[str] = field(default_factory=list)
    digest: str = ""
    trace: list[str] = field(default_factory=list)


class World:
    def __init__(self, seed: int, template: Template, workdir: Path) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.template = template
        self.workdir = workdir
        self.result = SeedResult(seed)
        self.hold_ttl_s = self.rng.choice((7 * 24 * 3600.0, 30.0))
        # Timing settings vary too: a short read timeout and a quick first check bring the
        # reconciler's look-up close to a request still on its way.
        self.read_timeout_s = self.rng.choice((2.0, 5.0, 10.0))
        self.schedule = self.rng.choice(((2.0, 10.0, 60.0, 300.0, 1800.0), (0.5, 2.0, 10.0, 60.0, 300.0)))
        self.ids = random.Random(seed ^ 0x5EED)  # every id the gateway makes
        # The merchant's side (its endpoint's faults, the dispatcher's timeout) draws from a
        # source of its own, so the rest of a seed's plan does not depend on it.
        hooks = random.Random(seed ^ 0x400C)
        self.webhooks = hooks.random() < WEBHOOK_SHARE
        self.merchant = Merchant(Faults(random.Random(hooks.random()), hooks.choice((0.0, 0.1, 0.25, 0.5)),
                                        self.read_timeout_s, 0.0),
                                 hooks.choice((2.0, 15.0)), self.log)
        self.ledger = Ledger(random.Random(self.rng.random()), self.rng.choice((0.0, 0.1, 0.3)), self.log)
        settings = self.settings(workdir / "gw0.db")
        self.faults = Faults(random.Random(self.rng.random()), self.rng.choice((0.0, 0.1, 0.25, 0.5)),
                             settings.processor_timeout_s, settings.attempt_deadline_s)
        noticing = random.Random(seed ^ 0x0071CE)  # a source of its own, like the merchant's
        self.notices = Notices(noticing, self.log) if noticing.random() < NOTICE_SHARE else None
        self.ledger.notices = self.notices
        self.crashes_left = self.rng.choice((0, 0, 1, 1, 2, 3))
        self.intents: list[tuple[int, str]] = [(self.rng.choice((1000, 2500, 9999)),
                                                self.rng.choice(("automatic", "manual")))
                                               for _ in range(self.rng.randint(1, 3))]
        self.intent_ids: list[str] = []
        self.ops = self._plan_ops()
        # Which intents pay by token: a source of its own, so the rest of the plan is as it was.
        by_token = random.Random(seed ^ 0x70CE)
        self.token_intents = {index for index in range(len(self.intents)) if by_token.random() < TOKEN_SHARE}
        for op in self.ops:
            op.by_token = op.kind == "process" and op.intent in self.token_intents
        # The client's retries draw from a source of their own too.
        self.client = Client(random.Random(seed ^ 0xC11E), template.merchant_id,
                             settings.idempotency_lock_timeout_s, self.log, self.result.violations)
        self.now = 0.0
        self.generation = 0
        self.db: Database | None = None  # the running process's

    def settings(self, path: Path) -> Settings:
        # A short hold life in some seeds: the reconciler's expiry void races the clients' capture.
        return Settings(data_dir=self.workdir, database_url=sqlite_url(path), master_key=self.template.master_key,
                        key_cache_ttl_s=1e9, run_background=False, db_pool_size=4,
                        reconcile_sweep_interval_s=SWEEP_INTERVAL_S, authorization_ttl_s=self.hold_ttl_s,
                        processor_timeout_s=self.read_timeout_s, reconcile_schedule_s=self.schedule,
                        relay_poll_interval_s=POLL_S, webhook_poll_interval_s=POLL_S,
                        webhook_timeout_s=self.merchant.timeout_s, webhook_retry_schedule_s=HOOK_RETRIES_S)

    def log(self, line: str) -> None:
        self.result.trace.append(f"{self.now_s():10.4f} {line}")

    def now_s(self) -> float:
        loop = _running_loop()
        return self.now if loop is None else loop.time()

    def _plan_ops(self) -> list[Op]:
        """Per intent: its payment, then (manual capture) a capture, a cancel, both or two
        captures, then refunds — each phase some seconds after the last, or at once (then
        they all race), and the requests of a phase close together (they race too)."""
        rng, ops = self.rng, []
        for index, (amount, method) in enumerate(self.intents):
            base = rng.uniform(0.0, CLIENT_WINDOW_S)
            gap = rng.choice((0.0, 1.0, 6.0, 20.0))  # between phases
            spread = rng.choice((0.01, 0.5, 3.0))  # within a phase
            phases = [["process"] * rng.choice((1, 1, 2, 3))]
            if method == "manual":
                phases.append(rng.choice((["capture"], ["cancel"], ["capture", "cancel"], ["capture", "capture"], [])))
            elif rng.random() < 0.1:
                phases.append(["cancel"])
            phases.append(["refund"] * rng.choice((0, 1, 2, 3)))
            for number, phase in enumerate(phases):
                for kind in phase:
                    part = rng.choice((None, amount // 3, amount // 2, amount)) if kind in ("capture", "refund") else None
                    ops.append(Op(0, base + number * gap + rng.expovariate(1.0 / spread), index, kind, part))
        ops.sort(key=lambda op: op.at)
        for number, op in enumerate(ops):
            op.number = number
        return ops

    # --- one process of the gateway ------------------------------------------------

    def run(self) -> SeedResult:
        path = self.workdir / "gw0.db"
        shutil.copyfile(self.template.path, path)
        while True:
            loop = SimulatedLoop(start_s=self.now)
            connector = SimulatedConnector(self.ledger, self.faults, self.log)
            try:
                loop.run_until_complete(self._process(loop, path, connector))
                self.now = loop.time()
                loop.close()
                break
            except SimulatedCrash:
                self.now = loop.time()
                connector.dead = True
                self._detach()
                self.log(f"CRASH at turn {loop.turns}")
                self.faults.counts["crash"] += 1
                self.generation += 1
                fresh = self.workdir / f"gw{self.generation}.db"
                copy_committed(path, fresh)
                _bury(loop, self.db, self.ids)
                path = fresh
                self.now += self.rng.uniform(0.1, 30.0)  # down for a while
                for op in self.ops:  # cut off: the client sends it again with its key, or gives up
                    self.client.cut_off(op, self.now)
            except Stalled as stalled:
                self.result.violations.append(f"stalled: {stalled}")
                _bury(loop, self.db, self.ids)
                break
        self.result.faults.update(self.faults.counts)
        self.result.faults.update(self.merchant.faults.counts)
        if self.notices is not None:
            self.result.faults.update(self.notices.counts)
        self.result.violations[:0] = self.ledger.violations
        for violation in self.result.violations:
            self.log(f"VIOLATION {violation}")
        self.result.digest = hashlib.sha256("\n".join(self.result.trace).encode()).hexdigest()
        return self.result

    async def _process(self, loop: SimulatedLoop, path: Path, connector: SimulatedConnector) -> None:
        collect_garbage()
        self.log(f"start generation {self.generation}")
        self.ledger.schedule(loop)
        settings = self.settings(path)
        self.db = create_database(settings.database_url, pool_size=settings.db_pool_size)
        gateway = core_gateway(settings, self.db, self.template.master, connector)
        watch(gateway.payments)  # what each request's key began (simulation/client.py)
        # As the cdc and webhooks extensions wire them (cdc/__init__.py, webhooks/__init__.py).
        dispatcher = SimulatedDispatcher(self.db, self.template.master, settings, self.merchant)
        relay = Relay(self.db, settings, [consumer_for(settings, dispatcher)])
        gateway.notifier.add_listener(relay.wake)
        if self.notices is not None:
            self.notices.attach(loop, lambda event: apply_events(gateway, connector.name, [event]))
        self.merchant.live_loop = loop
        reconciler = asyncio.create_task(gateway.reconciler.run_forever(), name="reconciler")
        background = [asyncio.create_task(relay.run_forever(), name="relay"),
                      asyncio.create_task(dispatcher.run_forever(), name="dispatcher")] if self.webhooks else []
        if self.token_intents:  # as the vault extension sets it up (vault/extension.py)
            gateway.vault = VaultService(gateway)
            await gateway.vault.start()
        if not self.intent_ids:
            for amount, method in self.intents:
                data = CreateIntent(amount, "USD", {}, None, {}, method)
                created = await create_intent(gateway.payments, self.template.merchant_id, data, None)
                assert not isinstance(created, ExistingKey)  # no key, nothing to find
                intent_id = jsoncodec.loads(created.answer)["paymentIntentId"]
                self.intent_ids.append(intent_id)
                self.log(f"created {intent_id} {amount} {method}")
            for index in sorted(self.token_intents):
                await self._tokenize(gateway, index)
        if self.generation:  # with the world attached: the reads let what is on its way arrive
            await self.client.recover_begun(gateway, self.ops)
        if self.crashes_left:
            self.crashes_left -= 1
            # Within about the turns a generation runs (median 124, 90th percentile 321 over
            # seeds 2,000,000-2,000,299 with the gateway's connection, whose statements take
            # no turn of their own): most crashes land, some after the work is done.
            loop.crash_at_turn = loop.turns + self.rng.randint(1, 200)
        await asyncio.gather(*(self._client(gateway, op) for op in self.ops if op.state == "planned"))
        await self.client.finish()
        # Calm: no more faults; what is in flight finishes; the reconciler settles the rest.
        self.faults.enabled = self.merchant.faults.enabled = False
        self.log("calm")
        await gateway.processing.drain(timeout_s=gateway.settings.attempt_deadline_s + 1)
        # The background work stops (each would poll through the virtual hours ahead); what
        # it left is finished below by the same code run once.
        with _pool_quiet():  # a task cancelled mid-statement: its connection's close is logged
            for task in (reconciler, *background):
                task.cancel()
            await asyncio.gather(reconciler, *background, return_exceptions=True)
        await self._settle(gateway)
        if self.webhooks:
            await self._send_webhooks(gateway, dispatcher)
        view = await gateway_view(gateway, events=self.webhooks)
        self.result.histories += len(view.intents)
        self.result.violations += check_quiescent(view, self.ledger)
        if self.webhooks:
            self.result.events += len(view.events)
            self.result.violations += check_webhooks(view, self.merchant.received, len(HOOK_RETRIES_S))
        self.result.violations += check_keys(self.client.records, lock_timeout_s=settings.idempotency_lock_timeout_s)
        loop.crash_at_turn = None
        await gateway.db.dispose()

    async def _tokenize(self, gateway: Gateway, index: int) -> None:
        """The intent's card into the vault, as the checkout's tokenization stores it: its
        token is what the intent's payments send."""
        intent_id = self.intent_ids[index]
        card = replace(CARD, fingerprint=fingerprint(CARD.details.number, gateway.fingerprint_key))
        async with gateway.db.write() as conn:
            stored = await gateway.vault.store(conn, card, merchant_id=self.template.merchant_id, intent_id=intent_id)
        for op in self.ops:
            if op.by_token and op.intent == index:
                op.token = stored.token
        self.log(f"tokenized the card of {intent_id}")

    async def _send_webhooks(self, gateway: Gateway, dispatcher: SimulatedDispatcher) -> None:
        """A relay run once delivers every change left (``paygate relay --once``); then the
        dispatcher sends what is pending, the clock jumping to each next attempt."""
        drained = Relay(gateway.db, gateway.settings, [consumer_for(gateway.settings, dispatcher)])
        await drained.drain()
        queue = DeliveryQueue(gateway.db)
        sent: int | None = None
        for _ in range(MAX_DISPATCH_ROUNDS):
            pending = await queue.recent(status="pending", limit=1000)
            if not pending:
                return
            now = clock.now_us()
            times = [row["next_attempt_at"] for row in pending]
            if sent == 0:
                # Due deliveries the last round could not send: their endpoint is full of the
                # leases a crashed gateway left, which hold its slots until they run out
                # (migration 0020). The clock jumps to the next moment that changes anything:
                # a lease's end (a leased row's next_attempt_at) or a retry falling due.
                times = [t for t in times if t > now] or times
            await asyncio.sleep(max(0.0, (min(times) - now) / 1_000_000))
            sent = await dispatcher.send_due()
            self.result.steps += 1
        self.result.violations.append(f"webhooks still pending after {MAX_DISPATCH_ROUNDS} dispatch rounds")

    async def _settle(self, gateway: Gateway) -> None:
        store = gateway.payments
        for _ in range(MAX_RECONCILER_PASSES):
            # Requests still on their way reach the processor first, and its notices the gateway.
            for _ in range(MAX_WORLD_WAITS):
                if (nxt := self._world_next()) is None:
                    break
                await asyncio.sleep(max(0.001, nxt - self.now_s()))
            else:
                self.result.violations.append(f"requests or notices still on their way after {MAX_WORLD_WAITS} waits")
                return
            due = await store.next_check_due()
            if due is None:
                return
            wait = (due - clock.now_us()) / 1_000_000
            if wait > 0:
                await asyncio.sleep(wait)
            report = await gateway.reconciler.run_once()
            self.result.steps += 1
            self.log(f"reconciler pass {sorted(report.outcomes.items())}")
        self.result.violations.append(f"the reconciler did not settle everything in {MAX_RECONCILER_PASSES} passes")

    def _detach(self) -> None:
        """The process crashed: nothing it still runs while it is cleaned up (on its own
        loop) reaches the processor, the merchant or the notices any more."""
        self.ledger.live_loop = self.merchant.live_loop = None
        if self.notices is not None:
            self.notices.live_loop = None

    def _world_next(self) -> float | None:
        """When the next request reaches the processor or the next notice the gateway."""
        times = [a.at for a in self.ledger.arrivals]
        if self.notices is not None and (at := self.notices.next_at()) is not None:
            times.append(at)
        return min(times, default=None)

    async def _client(self, gateway: Gateway, op: Op) -> None:
        await self.client.run(gateway, op, self.intent_ids[op.intent], self.now_s)
        self.result.steps += op.state == "answered"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _bury(loop: SimulatedLoop, db: Database | None, ids_source: random.Random) -> None:
    """Free what a crashed process held (its connections, its threads): its tasks are
    cancelled and run to their end on its own loop. Nothing of it reaches the world any
    more: the database is a copy now, the connector is dead, and its ids and jitter are
    drawn from a throwaway source."""
    state = random.getstate()
    ids.set_source(random.Random(0).randbytes)
    try:
        # Quiet: a connection that no task gave back is finalized when the last reference
        # to it goes ("cleaning up a connection not checked in"): at the latest when
        # _end_tasks returns.
        with _pool_quiet(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _end_tasks(loop, db)
    finally:
        random.setstate(state)
        ids.set_source(ids_source.randbytes)


def _end_tasks(loop: SimulatedLoop, db: Database | None) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(BaseException):
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    with contextlib.suppress(BaseException):
        loop.run_until_complete(loop.shutdown_asyncgens())
    if db is not None:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(db.dispose())
    loop.close()


def collect_garbage() -> None:
    """Collect now, at a point of the seed's own choosing. A connection that a crashed
    process's task never gave back is closed when it is collected — work for a database
    thread, on whatever loop runs then — so collections happen only here (the automatic
    collector is off during a seed): at the start of each process, the same in every run."""
    with _pool_quiet(), warnings.catch_warnings():  # "cleaning up a connection not checked in"
        warnings.simplefilter("ignore")
        gc.collect()


@contextlib.contextmanager
def _pool_quiet() -> Iterator[None]:
    """The connection pool's errors off: what it logs when a task is cancelled in the middle
    of a statement, or a crashed process's connection is collected, is the simulation's own
    doing (as a process's shutdown's would be)."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def seeded(seed: int, world: World) -> Iterator[None]:
    """The process-wide sources of time and randomness, the seed's for the run; no
    automatic garbage collection (see :func:`collect_garbage`)."""
    collecting = gc.isenabled()
    gc.disable()
    state = random.getstate()
    random.seed(seed)
    ids.set_source(world.ids.randbytes)
    clock.set_source(lambda: EPOCH_US + round(world.now_s() * 1_000_000))
    try:
        yield
    finally:
        clock.set_source(None)
        ids.set_source(None)
        random.setstate(state)
        if collecting:
            gc.enable()


def run_seed(seed: int, template: Template, workdir: Path) -> SeedResult:
    """Run one seed in ``workdir`` (emptied first: its files are this seed's)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    world = World(seed, template, workdir)
    with seeded(seed, world):
        return world.run()
