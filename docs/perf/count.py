"""What one complete payment costs, counted (docs/perf/history.md, the storage port).

Runs the gateway in-process (tests/support/app.py) with a connector that approves at once,
makes N complete payments (create → process with an encryptedCard and an Idempotency-Key →
one status read; TOKENIZE=1: create → tokenize → process with the token → status, the bench's
default flow) after a warm-up, and prints per payment: Python function calls (cProfile,
the whole event loop, then the gateway's share: the in-process httpx client's calls left out,
"Gateway's calls" below), statements sent to the driver by kind (asyncpg's query logger: what
goes through the driver's own fetch/execute, not SQLAlchemy's prepared path; sqlite3's trace
callback: every statement, trigger steps included), and rows added per table. BG=1 runs the
background tasks (relay, reconciler) too: a fixed drain after the payments, minus what an
idle drain of the same length runs; SIM=1 charges through the real simulator process and the
gateway's own connector. Works on the tree before the port too (``db/`` then): run each tree with
its own virtualenv (an editable install resolves a subpackage missing from the tree to its own).

    PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/count.py sqlite:////tmp/count.db 30
    BG=1 PYTHONPATH=server:sdk:checkout:. .venv/bin/python docs/perf/count.py postgresql://127.0.0.1:5432/count 30
    DUMP=/tmp/p.pstats ...   (cProfile's stats, to diff two trees by function)
    KEY_CACHE=1 ...          (the API-key cache on, 1 s as `paygate serve`'s default: the bench's
                              setting; off by default, as in the tests)
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import cProfile
import os
import pstats
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from payment_flow import Approve, pay  # this folder's (docs/perf/payment_flow.py)
from sqlalchemy import event, text
from sqlalchemy.util import await_only

import paygate
from paygate_server.simulator.testing import start_simulator
from tests.support.app import running_gateway, test_settings
from tests.support.databases import migrate

try:
    from paygate_server.storage import engine as engine_mod
except ImportError:
    from paygate_server.db import engine as engine_mod

STATEMENTS: collections.Counter[str] = collections.Counter()
COUNTING = False


_LITERALS = re.compile(r"x'[0-9a-fA-F]*'|'(?:[^']|'')*'|\$\d+|\b\d+\b")


def _record(sql: str) -> None:
    if COUNTING:
        STATEMENTS[_LITERALS.sub("?", " ".join(sql.split()))[:110]] += 1


def _on_connect(dbapi_connection: Any, _record_: Any) -> None:
    driver = dbapi_connection.driver_connection
    if hasattr(driver, "add_query_logger"):
        driver.add_query_logger(lambda q: _record(q.query))
    else:
        await_only(driver.set_trace_callback(_record))


_orig_init = engine_mod.Database.__init__


def _init(self: Any, *a: Any, **kw: Any) -> None:
    _orig_init(self, *a, **kw)
    event.listen(self.engine.sync_engine, "connect", _on_connect)


engine_mod.Database.__init__ = _init  # type: ignore[method-assign]


BACKGROUND = os.environ.get("BG", "0") == "1"
TOKENIZE = os.environ.get("TOKENIZE", "0") == "1"
KEY_CACHE_S = float(os.environ.get("KEY_CACHE", "0"))

# Gateway's calls: the files of the in-process client (httpx and its ASGI transport, the
# test's signing client and the SDK it signs with, the import machinery httpx's
# is-trio-running check runs every request) are the client's, every other package's (ours,
# Starlette, the drivers, this script's statement logger) the gateway's. The standard
# library's and builtins' calls are shared: each counts as the client's in the share its
# callers made from client code (cProfile's caller edges), e.g. asyncio's frames.
_CLIENT = re.compile(r"/(httpx|anyio|sniffio|h11)/|/tests/support/signing|/sdk/paygate/"
                     r"|^<frozen importlib")
_SHARED = re.compile(r"^~$|/lib/python3\.\d+/(?!site-packages/)|^<frozen |^<string>$")


def gateway_calls(stats: pstats.Stats) -> float:
    """Python calls of the gateway alone, the client's share of each function taken out."""
    entries = stats.stats  # type: ignore[attr-defined]
    share = {f: (1.0 if _CLIENT.search(f[0]) else 0.0) for f in entries}
    shared = [f for f in entries if _SHARED.search(f[0]) and not _CLIENT.search(f[0])]
    for _ in range(50):  # the share flows down the caller graph; cycles settle in a few rounds
        moved = 0.0
        for f in shared:
            callers = entries[f][4]
            if not callers:
                continue
            made = sum(c[1] for c in callers.values()) or 1
            new = sum(v[1] * share.get(c, 0.0) for c, v in callers.items()) / made
            moved = max(moved, abs(new - share[f]))
            share[f] = new
        if moved < 1e-6:
            break
    return sum(v[1] * (1.0 - share[f]) for f, v in entries.items())
DRAIN_S = 3.0


async def quiet() -> None:
    """With background tasks on: a fixed drain (the relay catches up); else nothing."""
    if BACKGROUND:
        await asyncio.sleep(DRAIN_S)


async def table_counts(gw: Any) -> dict[str, int]:
    out = {}
    async with gw.gateway.db.raw_connection() as conn:
        names = await conn.run_sync(lambda c: __import__("sqlalchemy").inspect(c).get_table_names())
        for n in names:
            out[n] = (await conn.execute(text(f"SELECT count(*) FROM {n}"))).scalar_one()
    return out


async def main(url: str, n: int) -> None:
    global COUNTING
    with tempfile.TemporaryDirectory() as data, contextlib.ExitStack() as stack:
        sim = os.environ.get("SIM") == "1"  # the real simulator process, the real connector
        extra = {"processor_url": stack.enter_context(start_simulator(data))} if sim else {}
        settings = test_settings(url, Path(data), run_background=BACKGROUND,
                                 key_cache_ttl_s=KEY_CACHE_S, **extra)
        async with running_gateway(settings) as gw:
            if not sim:
                gw.gateway.processing.connector = Approve()
            shop = await gw.new_merchant()
            jwks = gw.gateway.card_keys.jwks()
            jwes = [paygate.encrypt_card(jwks, number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
                    for _ in range(n + 5)]

            async def payment(i: int) -> None:
                await pay(gw, shop, jwes[i], f"k-{i}", tokenize=TOKENIZE)

            for i in range(5):
                await payment(i)
            await quiet()
            idle: collections.Counter[str] = collections.Counter()
            if BACKGROUND:  # what the background does idle in one drain, subtracted below
                STATEMENTS.clear()
                COUNTING = True
                await quiet()
                COUNTING = False
                idle = STATEMENTS.copy()
            before = await table_counts(gw)
            STATEMENTS.clear()
            prof = cProfile.Profile()
            COUNTING = True
            prof.enable()
            for i in range(5, 5 + n):
                await payment(i)
            prof.disable()
            req_stats = pstats.Stats(prof)
            req_calls, req_gateway = req_stats.total_calls, gateway_calls(req_stats)  # type: ignore[attr-defined]
            prof.enable()
            await quiet()
            prof.disable()
            COUNTING = False
            after = await table_counts(gw)
    stats = pstats.Stats(prof)
    flow = "tokenize" if TOKENIZE else "encryptedCard"
    print(f"== {url.split(':')[0]}  per payment over {n} ({flow}, key cache {KEY_CACHE_S:g} s)")
    print(f"python calls, request path (+ background while it ran): {req_calls / n:.0f}")
    print(f"  of which the gateway's (the in-process client's taken out): {req_gateway / n:.0f}")
    print(f"python calls incl. draining background: {stats.total_calls / n:.0f}")
    STATEMENTS.subtract(idle)
    total = sum(STATEMENTS.values())
    print(f"statements: {total / n:.2f}")
    for sql, c in sorted(STATEMENTS.items(), key=lambda kv: -kv[1]):
        if not c:
            continue
        print(f"  {c / n:6.2f}  {sql}")
    print("rows added:", {k: (after[k] - before.get(k, 0)) / n for k in after if after[k] != before.get(k, 0)})
    if os.environ.get("DUMP"):
        stats.dump_stats(os.environ["DUMP"])
    if os.environ.get("TOP"):
        stats.sort_stats("ncalls").print_stats(int(os.environ["TOP"]))


if __name__ == "__main__":
    migrate(sys.argv[1])
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20))
