"""Several hosts (issue #21): three gateways, each in a network namespace of its own, behind
HAProxy, sharing one PostgreSQL and NATS, under load.

* **One host killed** (SIGKILL of its gateway, the process group): the leases it held
  (relay consumers ``archive``, ``broker``, ``webhooks`` and the history pruner's) move to
  the others within :data:`LEASE_MOVE_BOUND_S`; waiters long-polling on one survivor hear
  changes made through the other; the broker stream still holds every change of every
  intent, gap-free; nothing lost, doubled or left unknown (the simulator is the oracle).
* **One host cut from PostgreSQL** (its path to the database blackholed): it answers 503
  with Retry-After within the timeouts' bound, the others keep serving; HAProxy, checking
  ``GET /readyz``, takes it out of rotation within :data:`LEAVE_BOUND_S`, after which no
  client through HAProxy gets a 503; once the path is back it serves again, without a
  restart, and HAProxy puts it back within :data:`RETURN_BOUND_S`.

Each host reaches PostgreSQL, NATS and the processor simulator through a fault proxy of
the test listening on the host's link (also how a database session is traced back to its
host). docs/reliability.md, "Several hosts", has the figures. Runs as root (CI); skipped
with the reason where namespaces, HAProxy or NATS are missing.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import pytest

from paygate_server.simulator.testing import SimulatorProcess
from tests.e2e.conftest import FAST_RECONCILE
from tests.e2e.test_database_faults import DB_TIMEOUTS, MAX_LATENCY_S
from tests.support.app import TEST_MASTER_KEY
from tests.support.eventually import eventually, eventually_sync
from tests.support.fault_proxy import FaultProxyThread
from tests.support.fault_windows import steady
from tests.support.netns import Host, Hosts, Unavailable
from tests.support.payment_load import PaymentLoad, check_settled, intents_of, summarize
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import make_merchant
from tests.support.signing import SignedClient
from tests.support.slow_set import is_slow_run

NATS = ("127.0.0.1", 4222)
GATEWAY_PORT = 8080
LEASE_RETRY_S = 0.5
# A killed host's sessions end when its sockets close (the kernel closes them with the
# process, PostgreSQL sees the FIN at once); a standing-by host retries every
# LEASE_RETRY_S. Bound: that, plus a loaded machine's scheduling.
LEASE_MOVE_BOUND_S = LEASE_RETRY_S + 4.5
LEASES = ("archive", "broker", "webhooks", "history-prune")
_LOCK_CLASS = 7_342_001  # storage/relay_leases.py
WAITERS = 4
WAKE_BOUND_S = 3.0  # a long-poll on one host hears a change made on another within this
METRICS_TOKEN = "several-hosts-metrics"  # /metrics from outside the host's loopback needs one
# HAProxy's check of each host: GET /readyz every CHECK_INTER_MS, down after FALL failures in
# a row, up after RISE successes (docs/operations.md, "Health checks").
CHECK_INTER_MS, FALL, RISE = 500, 2, 2
READY_TIMEOUT_S, READY_CACHE_S = 1.0, 0.5  # the gateways' PAYGATE_READY_* (their defaults)
# A cut host is out of rotation within: its cached "ready" running out, then FALL failed
# checks, each a probe waiting out its bound (a new probe meets another silent pooled
# connection) and the check interval after it; and a loaded machine's slack. ~3 s observed.
LEAVE_BOUND_S = READY_CACHE_S + FALL * (READY_TIMEOUT_S + CHECK_INTER_MS / 1000) + 2.0
# Healed, it is back within: its pool reconnecting (connect timeout 1 s), RISE checks, slack.
RETURN_BOUND_S = 1.0 + READY_CACHE_S + RISE * CHECK_INTER_MS / 1000 + 2.0
# How long the cut lasts at least once the host is out of rotation: the window in which
# clients through HAProxy must see no 503.
OUT_OF_ROTATION_S = 3.0
STATS_PATH = "/haproxy-stats"  # HAProxy's own page on the front end (never forwarded)


def _nats_up() -> bool:
    try:
        socket.create_connection(NATS, timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class GatewayHost:
    host: Host
    database: FaultProxyThread
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host.address}:{GATEWAY_PORT}"

    def start(self, env: dict[str, str]) -> None:
        command = [*self.host.exec_prefix(), sys.executable, "-m", "paygate_server", "serve",
                   "--host", self.host.address, "--port", str(GATEWAY_PORT), "--log-level", "warning"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child holds it; closed below
        try:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        finally:
            log.close()

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.host.name}: exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
            return False

        eventually_sync(healthy, timeout=60, interval=0.1, what=f"{self.host.name} to be healthy")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the gateway and anything it forked
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def haproxy(hosts: list[GatewayHost], directory: Path) -> Iterator[str]:
    """HAProxy in front of the hosts (round robin, health-checked): its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    servers = "\n".join(f"    server h{g.host.index} {g.host.address}:{GATEWAY_PORT} "
                        f"check inter {CHECK_INTER_MS} fall {FALL} rise {RISE}" for g in hosts)
    config = directory / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    # A check waits this long for /readyz's answer (it answers within its 1 s bound):
    # without it HAProxy gives a check only "inter" and would read a slow 503 as a timeout.
    timeout check 2s
    retries 2
    option redispatch
frontend paygate
    bind 127.0.0.1:{port}
    stats enable
    stats uri {STATS_PATH}
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /readyz
{servers}
""")
    log = open(directory / "haproxy.out", "ab")  # noqa: SIM115
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((directory / "haproxy.out").read_text())
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
            return False

        eventually_sync(up, timeout=30, interval=0.1, what="HAProxy to serve")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


async def rotation(balancer: str) -> dict[int, tuple[str, int]]:
    """HAProxy's view of each host (index): its check status ("UP", "DOWN", or "UP 1/2"
    and the like while it changes) and how many requests it has been sent in all."""
    async with httpx.AsyncClient(timeout=5) as http:
        csv = (await http.get(f"{balancer}{STATS_PATH};csv")).text
    header, *rows = csv.splitlines()
    names = header.lstrip("# ").split(",")
    found = {}
    for row in rows:
        record = dict(zip(names, row.split(","), strict=False))
        if record.get("pxname") == "gateways" and record.get("svname", "").startswith("h"):
            found[int(record["svname"][1:])] = (record["status"], int(record["stot"] or 0))
    return found


async def lease_holders(admin: asyncpg.Connection, hosts: list[GatewayHost]) -> dict[str, int | None]:
    """Which host (index) holds each lease: the advisory lock's session, traced by its
    client port to the host's database proxy."""
    rows = await admin.fetch(
        "SELECT l.objid::int AS key, a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.granted", _LOCK_CLASS)
    keys = {await admin.fetchval("SELECT hashtext($1)::oid::int", name): name for name in LEASES}
    by_port = {port: g.host.index for g in hosts for port in g.database.upstream_ports()}
    holders: dict[str, int | None] = dict.fromkeys(LEASES)
    for row in rows:
        name = keys.get(row["key"])
        if name is not None:
            holders[name] = by_port.get(row["client_port"])
    return holders


async def broker_gaps(stream: str, prefix: str, merchant_id: str, intents: list[dict[str, Any]]) -> dict[str, Any]:
    """Intents whose changes the stream does not hold exactly, gap-free (seq 1..n, n = the
    intent's change count in the gateway's history)."""
    import nats

    nc = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        seqs: dict[str, list[int]] = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            if msg.subject.startswith(f"{prefix}.{merchant_id}."):
                record = orjson.loads(msg.data)
                seqs.setdefault(record["intentId"], []).append(record["seq"])
    finally:
        await nc.close()
    return {i["paymentIntentId"]: seqs.get(i["paymentIntentId"])
            for i in intents if sorted(seqs.get(i["paymentIntentId"], [])) != list(range(1, i["_changes"] + 1))}


async def delete_stream(stream: str) -> None:
    import nats

    nc = await nats.connect(f"nats://{NATS[0]}:{NATS[1]}")
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The slow set only: skipped by a mark otherwise, so no server of the module starts."""
    if "hosts" in metafunc.fixturenames:
        slow = is_slow_run(metafunc.config, {m.name for m in metafunc.definition.iter_markers()})
        marks = () if slow else pytest.mark.skip(reason="the slow set only (-m slow): a minute of three hosts")
        metafunc.parametrize("hosts", [pytest.param(3, id="3-hosts", marks=marks)])


@pytest.mark.slow
@pytest.mark.postgres
def test_several_hosts_behind_haproxy(request: pytest.FixtureRequest, tmp_path: Path, hosts: int) -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (apt-get install -y haproxy; .ci/run does)")
    if not _nats_up():
        pytest.skip("no NATS server on 127.0.0.1:4222 (.ci/run starts one)")
    try:
        hosts_cm = Hosts(hosts)
    except Unavailable as exc:
        pytest.skip(f"several hosts: {exc}")
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"PGT_{tag}", f"pgt{tag}.changes"
    with contextlib.ExitStack() as stack:
        try:
            made = stack.enter_context(hosts_cm).hosts
        except Unavailable as exc:
            pytest.skip(f"several hosts: {exc}")
        stack.callback(lambda: asyncio.run(delete_stream(stream)))
        private_pg: PrivatePostgres = request.getfixturevalue("private_pg")  # made only when it runs
        simulator = stack.enter_context(SimulatorProcess(tmp_path / "simulator.db"))
        sim_port = int(urlsplit(simulator.base_url).port or 0)
        gateways = []
        for host in made:
            # The host's ways out, each a proxy listening on its link: the database (the one
            # a test may cut), NATS and the processor.
            database = stack.enter_context(FaultProxyThread("127.0.0.1", private_pg.port, listen_host=host.gateway_side))
            nats_proxy = stack.enter_context(FaultProxyThread(*NATS, listen_host=host.gateway_side))
            processor = stack.enter_context(FaultProxyThread("127.0.0.1", sim_port, listen_host=host.gateway_side))
            data_dir = tmp_path / host.name
            data_dir.mkdir()
            gateway = GatewayHost(host, database, tmp_path / f"gateway-{host.index}.log")
            stack.callback(gateway.kill)
            gateway.start({
                "PAYGATE_DATABASE_URL": private_pg.url(port=database.port, host=host.gateway_side),
                "PAYGATE_DATA_DIR": str(data_dir),
                "PAYGATE_ARCHIVE_DIR": str(tmp_path / "archive"),  # shared, as a bucket would be
                "PAYGATE_MASTER_KEY": TEST_MASTER_KEY,
                "PAYGATE_KEY_CACHE_TTL_S": "0",
                "PAYGATE_PROCESSOR_URL": f"http://{host.gateway_side}:{processor.port}",
                "PAYGATE_BROKER_URL": f"nats://{host.gateway_side}:{nats_proxy.port}",
                "PAYGATE_BROKER_STREAM": stream,
                "PAYGATE_BROKER_SUBJECT_PREFIX": prefix,
                "PAYGATE_RELAY_LEASE_RETRY_S": str(LEASE_RETRY_S),
                "PAYGATE_HISTORY_PRUNE_INTERVAL_S": str(LEASE_RETRY_S),
                "PAYGATE_METRICS_TOKEN": METRICS_TOKEN,
                **FAST_RECONCILE, **DB_TIMEOUTS,
            })
            gateways.append(gateway)
        balancer = stack.enter_context(haproxy(gateways, tmp_path))
        creds = make_merchant(private_pg.url())
        jwks = httpx.get(f"{balancer}/checkout/v1/keys").json()

        asyncio.run(_scenario(private_pg, gateways, balancer, simulator.base_url, creds, jwks, stream, prefix))


async def _scenario(pg: PrivatePostgres, gateways: list[GatewayHost], balancer: str, simulator_url: str,
                    creds: Any, jwks: dict[str, Any], stream: str, prefix: str) -> None:
    admin = await asyncpg.connect(pg.url())
    try:
        loads = await _kill_one(admin, gateways, balancer, creds, jwks)
    finally:
        await admin.close()
    survivors = [g for g in gateways if g.proc is not None and g.proc.poll() is None]

    # Waiters on one survivor, payments through the other (no other traffic meanwhile, so
    # the listener's in-progress gauge counts exactly the waiters).
    wakes = await _waiters_hear_other_hosts(survivors, creds, jwks)
    print(f"{WAITERS} waiters on host {survivors[0].host.index} woken by host {survivors[1].host.index}'s "
          f"payments in at most {max(wakes):.2f}s")
    assert max(wakes) <= WAKE_BOUND_S, wakes

    loads.append(await _cut_one(survivors, balancer, creds, jwks))

    everything = PaymentLoad(balancer, creds, jwks)
    for load in loads:
        everything.intents |= load.intents
        everything.seen_succeeded |= load.seen_succeeded
    settled = await check_settled(balancer, simulator_url, everything)
    print(f"settled {settled}; {sum(len(load.calls) for load in loads)} calls in all")
    intents = await intents_of(balancer, creds)
    async with httpx.AsyncClient(base_url=balancer, timeout=30) as http:
        client = SignedClient(http, creds)
        for intent in intents:
            history = (await client.get(f"/api/v1/payment/intent/{intent['paymentIntentId']}/history")).json()
            intent["_changes"] = len(history["data"])
    await eventually(lambda: broker_gaps(stream, prefix, creds.merchant_id, intents),
                     until=lambda gaps: not gaps, timeout=30, interval=0.5,
                     what="the broker stream to hold every change of every intent")
    print(f"broker stream: every change of {len(intents)} intents, gap-free")


async def _kill_one(admin: asyncpg.Connection, gateways: list[GatewayHost], balancer: str, creds: Any,
                    jwks: dict[str, Any]) -> list[PaymentLoad]:
    """Kill the host holding the most leases under load; the leases move, payments go on."""
    load = PaymentLoad(balancer, creds, jwks)
    load.start()
    try:
        await steady(load, time.monotonic())
        holders = await eventually(lambda: lease_holders(admin, gateways),
                                   until=lambda h: all(v is not None for v in h.values()),
                                   what="every lease to be held")
        counts = {g.host.index: list(holders.values()).count(g.host.index) for g in gateways}
        victim = max(gateways, key=lambda g: counts[g.host.index])
        alive = {g.host.index for g in gateways if g is not victim}
        killed_at = time.monotonic()
        victim.kill()
        moved = await eventually(lambda: lease_holders(admin, gateways),
                                 until=lambda h: all(v in alive for v in h.values()),
                                 timeout=30, interval=0.05, what="the leases to move to the survivors")
        move_s = time.monotonic() - killed_at
        print(f"host {victim.host.index} killed: leases {holders} -> {moved} in {move_s:.2f}s")
        assert move_s <= LEASE_MOVE_BOUND_S, f"leases moved in {move_s:.2f}s"
        await steady(load, time.monotonic())
    finally:
        await load.stop()
    window = summarize(load, "host killed (through HAProxy)", killed_at, killed_at + move_s)
    print(window.line())
    # Only requests in flight on the dead host may fail (HAProxy's 502/504 or a dropped
    # connection; retried with their key): at most one per client. Never a gateway's 5xx.
    in_flight = [bad for bad in window.bad if bad.split()[1] in {"502", "504", "RemoteProtocolError", "ReadError"}]
    assert in_flight == window.bad and len(in_flight) <= load.clients, window.line()
    return [load]


async def _cut_one(survivors: list[GatewayHost], balancer: str, creds: Any, jwks: dict[str, Any]) -> PaymentLoad:
    """Blackhole one survivor's path to PostgreSQL under load: it answers 503, the other
    serves; HAProxy's /readyz check takes it out of rotation, and then no client through
    HAProxy gets a 503; healed, it serves again and HAProxy sends it requests again."""
    cut, other = survivors
    index = cut.host.index
    load = PaymentLoad(balancer, creds, jwks)
    load.start()
    try:
        await steady(load, time.monotonic())
        assert (await rotation(balancer))[index][0] == "UP"
        cut.database.blackhole()
        cut_at = time.monotonic()
        try:
            out = asyncio.create_task(_in_rotation(balancer, index, "DOWN"))  # watched meanwhile
            try:
                cut_answers = await _direct_payments(cut, creds, 3)
                other_answers = await _direct_payments(other, creds, 3)
                left_at = await out
            finally:
                out.cancel()
            left_s = left_at - cut_at
            # The cut goes on for a while with the host out of rotation: the window's
            # length, not a wait for a result.
            await asyncio.sleep(max(0.0, left_at + OUT_OF_ROTATION_S - time.monotonic()))
        finally:
            cut.database.heal()
        healed_at = time.monotonic()
        print(f"host {index} cut from PostgreSQL for {healed_at - cut_at:.1f}s: it answered "
              f"{cut_answers} (status, Retry-After, seconds); host {other.host.index} answered {other_answers}")
        assert all(status == 503 and retry_after and seconds <= MAX_LATENCY_S
                   for status, retry_after, seconds in cut_answers), cut_answers
        assert all(status == 201 for status, _, _ in other_answers), other_answers
        print(f"host {index} out of HAProxy's rotation {left_s:.2f}s after the cut")
        assert left_s <= LEAVE_BOUND_S, f"out of rotation after {left_s:.2f}s"
        await steady(load, healed_at)
        recovered = await eventually(lambda: _direct_payments(cut, creds, 1),
                                     until=lambda answers: answers[0][0] == 201, timeout=30,
                                     what=f"host {index} to serve again")
        print(f"host {index} serves again {time.monotonic() - healed_at:.2f}s after the cut healed: "
              f"{recovered}")
        back_s = await _in_rotation(balancer, index, "UP") - healed_at
        back = await rotation(balancer)
        print(f"host {index} back in HAProxy's rotation {back_s:.2f}s after the cut healed")
        assert back_s <= RETURN_BOUND_S, f"back in rotation after {back_s:.2f}s"
        # Back means sent requests again: the load reaches it through HAProxy.
        await eventually(lambda: rotation(balancer), until=lambda r: r[index][1] > back[index][1], timeout=30,
                         interval=0.1, what=f"requests through HAProxy to reach host {index} again")
    finally:
        await load.stop()
    window = summarize(load, "host cut from PostgreSQL (through HAProxy)", cut_at, healed_at)
    print(window.line())
    assert not window.bad, window.line()
    before = summarize(load, f"cut, host {index} still in rotation", cut_at, left_at)
    print(before.line())
    # Once HAProxy has taken the host out, a request it forwards goes to the other host:
    # no 503 for a call started from then on (one started before may still meet the cut host).
    after = [c for c in load.calls if left_at <= c.started < healed_at]
    print(f"cut, host {index} out of rotation ({healed_at - left_at:.1f}s): {len(after)} calls, "
          f"{sum(c.status == 503 for c in after)} 503")
    assert after and not [c.describe() for c in after if c.status == 503], [c.describe() for c in after]
    return load


async def _in_rotation(balancer: str, index: int, status: str) -> float:
    """When (monotonic) HAProxy's check status of host ``index`` became ``status``."""
    await eventually(lambda: rotation(balancer), until=lambda r: r[index][0] == status, timeout=30,
                     interval=0.05, what=f"HAProxy to mark host {index} {status}")
    return time.monotonic()


async def _direct_payments(gateway: GatewayHost, creds: Any, count: int) -> list[tuple[int, str | None, float]]:
    """``count`` intents created on this host alone: (status, Retry-After, seconds) each."""
    answers = []
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        client = SignedClient(http, creds)
        for _ in range(count):
            started = time.monotonic()
            r = await client.post("/api/v1/payment/intent", {"amount": 500, "currency": "USD", "productDetails": {"sku": "mug-01", "name": "Mug"}},
                                  idempotency_key=uuid.uuid4().hex)
            answers.append((r.status_code, r.headers.get("retry-after"), round(time.monotonic() - started, 2)))
    return answers


async def _waiters_hear_other_hosts(survivors: list[GatewayHost], creds: Any, jwks: dict[str, Any]) -> list[float]:
    """Long-polls on the first survivor for intents paid through the second: how long each
    waited after its payment was answered."""
    import paygate

    listener, payer = survivors
    async with httpx.AsyncClient(base_url=listener.base_url, timeout=30) as lhttp, \
            httpx.AsyncClient(base_url=payer.base_url, timeout=30) as phttp:
        waiting, paying = SignedClient(lhttp, creds), SignedClient(phttp, creds)
        intents = [(await paying.create_intent())["paymentIntentId"] for _ in range(WAITERS)]

        async def wait(intent_id: str) -> tuple[str, float]:
            # A long-poll answers at the intent's first change (in_progress): poll again
            # until the last. Woken by nothing, each would hold its 20 s.
            while True:
                r = await waiting.get(f"/api/v1/payment/status?paymentIntentId={intent_id}&wait=20")
                if r.json()["status"] not in {"created", "in_progress"}:
                    return r.json()["status"], time.monotonic()

        waits = [asyncio.create_task(wait(i)) for i in intents]
        # Paid only once every long-poll is in (no other request reaches the listener now).
        await eventually(lambda: _in_progress(listener, len(intents)), what="the long-polls to be waiting")
        paid_at = {}
        for intent_id in intents:
            jwe = paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
            r = await paying.post("/api/v1/payment/process", {
                "paymentIntentId": intent_id, "paymentMethod": "card", "paymentDetails": {"encryptedCard": jwe}})
            assert r.json()["status"] == "succeeded", r.text
            paid_at[intent_id] = time.monotonic()
        woken = [await w for w in waits]
    assert [status for status, _ in woken] == ["succeeded"] * len(intents)
    return [max(0.0, at - paid_at[i]) for i, (_, at) in zip(intents, woken, strict=True)]


async def _in_progress(gateway: GatewayHost, count: int) -> bool:
    """Whether the host is handling ``count`` requests besides this scrape."""
    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"{gateway.base_url}/metrics",
                                  headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    return any(line.startswith("paygate_http_requests_in_progress ") and float(line.split()[-1]) >= count + 1
               for line in metrics.splitlines())
